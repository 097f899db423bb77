"""denoise: train, sweep and compare U-Net denoisers for salt-and-pepper noise."""

__version__ = "0.1.0"

from denoise.runtime.resolvers import register_resolvers

register_resolvers()
