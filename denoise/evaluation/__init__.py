"""Scoring denoisers against each other and the classical filters on the same seeded noise
(``python -m denoise.evaluate``)."""
