"""The Hydra configuration of every command. Installed as the package ``denoise.conf``, which
the commands search (``pkg://denoise.conf``), so they work from any folder after any install."""
