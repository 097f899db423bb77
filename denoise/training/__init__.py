"""What a training run adds to Lightning's loop: its callbacks and its ``summary.json``.
Configured by ``conf/callbacks/``, ``conf/trainer/`` and ``conf/logger/``."""
