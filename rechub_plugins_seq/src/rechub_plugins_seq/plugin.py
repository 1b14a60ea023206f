"""Registration of the sequential models and their user encoders (entry point ``rechub: seq``).

Each model is registered twice: as a ready-made ``model`` (``GRU4Rec``, ...) and its user
encoder as an ``encoder`` (``gru4rec``, ...), which composes with any item tower in a
``TwoTowerModel``. Both are the same encoder class, so there is one implementation per model.

``train_defaults`` are a full softmax over the catalogue (sampler ``full``, loss ``softmax``,
mode 2), with lr / weight decay / epochs chosen on the MovieLens-100K validation split (see the
package README for the measured numbers).
"""

from __future__ import annotations

from collections.abc import Iterator

from rechub_core.hookspecs import hookimpl
from rechub_core.specs import EncoderSpec, ModelSpec, TrainDefaults
from rechub_plugins_seq.gru4rec import GRU4Rec, GRU4RecEncoder
from rechub_plugins_seq.narm import NARM, NARMEncoder
from rechub_plugins_seq.sasrec import SASRec, SASRecEncoder
from rechub_plugins_seq.stamp import STAMP, STAMPEncoder

FAMILY = "sequential"


def _full_softmax(**kw: object) -> TrainDefaults:
    return TrainDefaults(mode=2, loss="softmax", sampler="full", **kw)  # type: ignore[arg-type]


#: sequence_batch_size counts user sequences (all four train on every position of each sequence);
#: 32 sequences (~1,300 targets) a step. lr chosen on the validation split where two were tried
#: (3e-3 > 1e-3 for all four after 10 epochs); the README lists what was measured.
TRAIN_DEFAULTS: dict[str, TrainDefaults] = {
    "GRU4Rec": _full_softmax(lr=3e-3, sequence_batch_size=32, max_epochs=40, patience=5),
    "NARM": _full_softmax(lr=3e-3, sequence_batch_size=32, max_epochs=40, patience=5),
    "SASRec": _full_softmax(lr=3e-3, sequence_batch_size=32, max_epochs=40, patience=5),
    "STAMP": _full_softmax(lr=3e-3, sequence_batch_size=32, max_epochs=40, patience=5),
}


@hookimpl
def rechub_register_models() -> Iterator[ModelSpec]:
    described = (
        (GRU4Rec, "GRU over the ordered history, last state (Hidasi et al. 2015)"),
        (NARM, "GRU last state + attention over all states (CIKM 2017)"),
        (SASRec, "causal self-attention, trained on every position (ICDM 2018)"),
        (STAMP, "attention memory + last click short-term interest (KDD 2018)"),
    )
    for cls, description in described:
        yield ModelSpec(
            name=cls.__name__,
            factory=cls,
            family=FAMILY,
            modes=cls.supported_modes,
            from_schema=cls.from_schema,
            description=description,
            train_defaults=TRAIN_DEFAULTS[cls.__name__],
        )


@hookimpl
def rechub_register_encoders() -> Iterator[EncoderSpec]:
    for name, cls in (
        ("gru4rec", GRU4RecEncoder),
        ("narm", NARMEncoder),
        ("sasrec", SASRecEncoder),
        ("stamp", STAMPEncoder),
    ):
        yield EncoderSpec(
            name=name, factory=cls, description=f"{cls.model_name} user encoder over the history"
        )
