"""Where images and noise come from: FER-style CSVs (parsed once, cached), the embedded
default data, the LightningDataModule, and salt-and-pepper noise. Configured by ``conf/data/``."""
