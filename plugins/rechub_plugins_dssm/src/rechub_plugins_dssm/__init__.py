"""DSSM-family two-tower models for rechub: DSSM, FaceBookDSSM, YoutubeDNN, YoutubeSBC.

Names are imported on first access (PEP 562), so that loading the plugin (its ``plugin``
module) to list it imports neither torch nor the model modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rechub_core.specs import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals())
