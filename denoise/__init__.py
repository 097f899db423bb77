"""denoise: train, sweep and compare U-Net denoisers for salt-and-pepper noise."""

__version__ = "0.1.0"

# The repository's top-level conf/, installed as the package denoise.conf (pyproject.toml), so
# that every command finds its configuration from any folder, editable install or not.
CONFIG_MODULE = "denoise.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"

# Registered on import, before any config is composed; the resolvers read CONFIG_MODULE.
from denoise.runtime.resolvers import register_resolvers  # noqa: E402

register_resolvers()
