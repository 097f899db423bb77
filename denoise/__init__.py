"""denoise: train, sweep and compare U-Net denoisers for salt-and-pepper noise.

From your own code: ``from denoise import restore, Denoiser, add_salt_and_pepper``
(docs/python.md). They load torch when first used, not on ``import denoise``: the commands'
``--help`` imports this package and must not wait for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Denoiser", "__version__", "add_salt_and_pepper", "restore"]

# The repository's top-level conf/, installed as the package denoise.conf (pyproject.toml), so
# that every command finds its configuration from any folder, editable install or not.
CONFIG_MODULE = "denoise.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"

# Registered on import, before any config is composed; the resolvers read CONFIG_MODULE.
from denoise.runtime.resolvers import register_resolvers  # noqa: E402

register_resolvers()

API_MODULE = "denoise.inference.api"  # where the public names live (PEP 562: loaded on use)

if TYPE_CHECKING:  # what editors and type checkers see
    from denoise.inference.api import Denoiser, add_salt_and_pepper, restore


def __getattr__(name: str) -> Any:
    if name in __all__:  # __version__ is a global: never asked here
        import importlib

        return getattr(importlib.import_module(API_MODULE), name)
    raise AttributeError(f"module 'denoise' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
