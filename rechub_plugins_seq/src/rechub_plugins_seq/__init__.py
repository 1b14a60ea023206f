"""Sequential retrieval models for rechub: GRU4Rec, NARM, SASRec, STAMP."""

from rechub_plugins_seq.base import SequenceEncoder, SequentialModel, StepEncoder
from rechub_plugins_seq.gru4rec import GRU4Rec, GRU4RecEncoder
from rechub_plugins_seq.narm import NARM, NARMEncoder
from rechub_plugins_seq.sasrec import SASRec, SASRecEncoder
from rechub_plugins_seq.stamp import STAMP, STAMPEncoder

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
