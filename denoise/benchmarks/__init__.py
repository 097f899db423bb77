"""Speed measured against the machine's own ceilings, and what a person waits for
(``python -m denoise.bench``)."""
