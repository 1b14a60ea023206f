"""Multi-interest retrieval models for rechub: MIND, SINE, ComirecDR, ComirecSA."""

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
