"""rechub: a plugin-based PyTorch toolkit for the retrieval stage of recommender systems."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rechub_core.errors import RechubError
from rechub_core.plugins import create, get_spec, list_components

try:
    __version__ = version("rechub")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

__all__ = ["RechubError", "__version__", "create", "get_spec", "list_components"]
