"""The denoisers and how they learn: the reference and corruption-aware U-Nets, the classical
filters they are compared with, the LightningModule, losses and metrics.
Configured by ``conf/model/``, ``conf/optimizer/`` and ``conf/scheduler/``."""
