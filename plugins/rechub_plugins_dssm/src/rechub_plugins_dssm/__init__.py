"""DSSM-family two-tower models for rechub: DSSM, FaceBookDSSM, YoutubeDNN, YoutubeSBC.

Names are imported on first access (PEP 562), so that loading the plugin (its ``plugin``
module) to list it imports neither torch nor the model modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rechub_plugins_dssm.dssm import DSSM
    from rechub_plugins_dssm.facebook_dssm import FaceBookDSSM
    from rechub_plugins_dssm.youtube_dnn import YoutubeDNN
    from rechub_plugins_dssm.youtube_sbc import YoutubeSBC

#: public name -> the submodule that defines it
_SOURCES: dict[str, str] = {
    "DSSM": "dssm",
    "FaceBookDSSM": "facebook_dssm",
    "YoutubeDNN": "youtube_dnn",
    "YoutubeSBC": "youtube_sbc",
}

__all__ = ["DSSM", "FaceBookDSSM", "YoutubeDNN", "YoutubeSBC"]


def __getattr__(name: str) -> Any:
    if name in _SOURCES:
        value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SOURCES])
