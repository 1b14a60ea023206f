"""rechub plugin template: an attention-pooled history encoder and the model built from it.

Names are imported on first access (PEP 562), so that loading the plugin (its ``plugin``
module) to list it imports neither torch nor the model module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rechub_core.specs import lazy_exports

if TYPE_CHECKING:
    from rechub_plugin_template.model import AttentionPool, AttentionPoolEncoder

__all__ = ["AttentionPool", "AttentionPoolEncoder"]


__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(__all__, "model"), globals())
