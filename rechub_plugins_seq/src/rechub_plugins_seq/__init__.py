"""Sequential retrieval models for rechub: GRU4Rec, NARM, SASRec, STAMP.

Names are imported on first access (PEP 562), so that loading the plugin (its ``plugin``
module) to list it imports neither torch nor the model modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rechub_core.specs import lazy_exports

if TYPE_CHECKING:
    from rechub_plugins_seq.base import SequenceEncoder, SequentialModel, StepEncoder
    from rechub_plugins_seq.gru4rec import GRU4Rec, GRU4RecEncoder
    from rechub_plugins_seq.narm import NARM, NARMEncoder
    from rechub_plugins_seq.sasrec import SASRec, SASRecEncoder
    from rechub_plugins_seq.stamp import STAMP, STAMPEncoder

#: public name -> the submodule that defines it
_SOURCES: dict[str, str] = {
    "SequenceEncoder": "base",
    "SequentialModel": "base",
    "StepEncoder": "base",
    "GRU4Rec": "gru4rec",
    "GRU4RecEncoder": "gru4rec",
    "NARM": "narm",
    "NARMEncoder": "narm",
    "SASRec": "sasrec",
    "SASRecEncoder": "sasrec",
    "STAMP": "stamp",
    "STAMPEncoder": "stamp",
}

__all__ = [
    "NARM",
    "STAMP",
    "GRU4Rec",
    "GRU4RecEncoder",
    "NARMEncoder",
    "SASRec",
    "SASRecEncoder",
    "STAMPEncoder",
    "SequenceEncoder",
    "SequentialModel",
    "StepEncoder",
]


__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals())
