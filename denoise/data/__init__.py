"""Where images and noise come from: FER-style CSVs and folders of image files (both read once,
cached), the embedded default data, the LightningDataModules, and salt-and-pepper noise.
Configured by ``conf/data/``."""
