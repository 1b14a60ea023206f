"""rechub plugin template: an attention-pooled history encoder and the model built from it.

Names are imported on first access (PEP 562), so that loading the plugin (its ``plugin``
module) to list it imports neither torch nor the model module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rechub_plugin_template.model import AttentionPool, AttentionPoolEncoder

__all__ = ["AttentionPool", "AttentionPoolEncoder"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module(f"{__name__}.model"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
