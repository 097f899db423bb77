"""The sweep report (``python -m denoise.report``): one table and one plot comparing a sweep's
jobs, and the Hydra callback that writes them when a sweep ends."""
