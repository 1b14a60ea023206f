"""Multi-interest retrieval models for rechub: MIND, SINE, ComirecDR, ComirecSA.

Names are imported on first access (PEP 562), so that loading the plugin (its ``plugin``
module) to list it imports neither torch nor the model modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rechub_core.specs import lazy_exports

if TYPE_CHECKING:
    from rechub_plugins_multiinterest.base import (
        MultiInterestEncoder,
        MultiInterestModel,
        category_diversity,
        controllable_aggregation,
        merge_interest_topk,
    )
    from rechub_plugins_multiinterest.comirec_dr import ComirecDR, ComirecDREncoder
    from rechub_plugins_multiinterest.comirec_sa import ComirecSA, ComirecSAEncoder
    from rechub_plugins_multiinterest.mind import MIND, MINDEncoder
    from rechub_plugins_multiinterest.sine import SINE, SINEEncoder

#: public name -> the submodule that defines it
_SOURCES: dict[str, str] = {
    "MultiInterestEncoder": "base",
    "MultiInterestModel": "base",
    "category_diversity": "base",
    "controllable_aggregation": "base",
    "merge_interest_topk": "base",
    "ComirecDR": "comirec_dr",
    "ComirecDREncoder": "comirec_dr",
    "ComirecSA": "comirec_sa",
    "ComirecSAEncoder": "comirec_sa",
    "MIND": "mind",
    "MINDEncoder": "mind",
    "SINE": "sine",
    "SINEEncoder": "sine",
}

__all__ = [
    "MIND",
    "SINE",
    "ComirecDR",
    "ComirecDREncoder",
    "ComirecSA",
    "ComirecSAEncoder",
    "MINDEncoder",
    "MultiInterestEncoder",
    "MultiInterestModel",
    "SINEEncoder",
    "category_diversity",
    "controllable_aggregation",
    "merge_interest_topk",
]


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals())
