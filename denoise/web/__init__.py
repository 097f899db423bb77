"""The demo page (``python -m denoise.demo``): ``page.py`` lays out the page and serves it,
importing no torch, so that the page is up before the models are; ``pictures.py`` does the
work behind it, with predict's reading, noise, restoring and writing."""
