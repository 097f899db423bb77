"""Using a trained denoiser: loading a checkpoint or the shipped weights, and tiling large
images. Used by the ``evaluate``, ``predict`` and ``bench`` commands."""
