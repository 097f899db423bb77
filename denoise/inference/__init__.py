"""Using a trained denoiser: loading a checkpoint or a model shipped in the package (by name:
``shipped.py``), and tiling large images. Used by the ``evaluate``, ``predict`` and ``bench``
commands."""
