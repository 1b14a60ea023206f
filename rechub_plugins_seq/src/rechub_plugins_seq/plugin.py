"""Registration of the sequential models and their user encoders (entry point ``rechub: seq``).

Each model is registered twice: as a ready-made ``model`` (``GRU4Rec``, ...) and its user
encoder as an ``encoder`` (``gru4rec``, ...), which composes with any item tower in a
``TwoTowerModel``. Both are the same encoder class, so there is one implementation per model.

``train_defaults`` are a softmax by the catalogue-size rule (sampler ``auto``: the full
catalogue up to 25,000 items, 512 shared uniform negatives above; loss ``softmax``,
mode 2), with lr / weight decay / epochs chosen on the MovieLens-100K validation split (see the
package README for the measured numbers).
"""

from __future__ import annotations

from collections.abc import Iterator

from rechub_core.hookspecs import hookimpl
from rechub_core.specs import EncoderSpec, ModelSpec, TrainSettings

FAMILY = "sequential"

#: model name -> (module, description); registered lazily as "module:Name" (and the encoder as
#: "module:NameEncoder"), so listing them imports neither torch nor the model modules. Their
#: training modes are SequentialModel.supported_modes (read by ModelSpec.modes on first use).
_MODELS: dict[str, tuple[str, str]] = {
    "GRU4Rec": ("gru4rec", "GRU over the ordered history, last state (Hidasi et al. 2015)"),
    "NARM": ("narm", "GRU last state + attention over all states (CIKM 2017)"),
    "SASRec": ("sasrec", "causal self-attention, trained on every position (ICDM 2018)"),
    "STAMP": ("stamp", "attention memory + last click short-term interest (KDD 2018)"),
}


def _full_softmax(**kw: object) -> TrainSettings:
    # sampler "auto": full softmax up to 25,000 items, 512 shared negatives above
    return TrainSettings(mode=2, loss="softmax", sampler="auto", **kw)  # type: ignore[arg-type]


#: sequence_batch_size counts user sequences (all four train on every position of each sequence);
#: 32 sequences (~1,300 targets) a step. lr chosen on the validation split where two were tried
#: (3e-3 > 1e-3 for all four after 10 epochs); the README lists what was measured.
TRAIN_DEFAULTS: dict[str, TrainSettings] = {
    "GRU4Rec": _full_softmax(lr=3e-3, sequence_batch_size=32, epochs=40, patience=5),
    "NARM": _full_softmax(lr=3e-3, sequence_batch_size=32, epochs=40, patience=5),
    "SASRec": _full_softmax(lr=3e-3, sequence_batch_size=32, epochs=40, patience=5),
    "STAMP": _full_softmax(lr=3e-3, sequence_batch_size=32, epochs=40, patience=5),
}


@hookimpl
def rechub_register_models() -> Iterator[ModelSpec]:
    for name, (module, description) in _MODELS.items():
        yield ModelSpec(
            name=name,
            factory=f"rechub_plugins_seq.{module}:{name}",
            family=FAMILY,
            description=description,
            train_defaults=TRAIN_DEFAULTS[name],
        )


@hookimpl
def rechub_register_encoders() -> Iterator[EncoderSpec]:
    for name, (module, _) in _MODELS.items():
        yield EncoderSpec(
            name=module,
            factory=f"rechub_plugins_seq.{module}:{name}Encoder",
            description=f"{name} user encoder over the history",
        )
