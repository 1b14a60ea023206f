"""Registration of the sequential models and their user encoders (entry point ``rechub: seq``).

Each model is registered twice: as a ready-made ``model`` (``GRU4Rec``, ...) and its user
encoder as an ``encoder`` (``gru4rec``, ...), which composes with any item tower in a
``TwoTowerModel``. Both are the same encoder class, so there is one implementation per model.

``train_defaults`` are a softmax by the catalogue-size rule (sampler ``auto`` with its bound
raised to 25,000 items: the full catalogue up to there, 512 shared uniform negatives above;
loss ``softmax``, mode 2). Models trained on every position gain more from the exact softmax
than the DSSM family (on Toys_and_Games SASRec's validation NDCG@10 was 0.0718 full against
0.0678 with 2,048 shared negatives, ``benchmarks/results/defaults.md``). lr / epochs were
chosen on validation splits (MovieLens-100K, then Toys); all four validate and keep a one-epoch
moving average of their weights (``ema_epochs``); see the package README.
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


#: the largest catalogue the family trains with a full softmax (above: 512 shared negatives)
MAX_FULL_ITEMS = 25_000


#: the one training recipe of all four models: softmax by the catalogue-size rule with the
#: family's bound. sequence_batch_size counts user sequences (all four train on every position
#: of each sequence); 32 sequences (~1,300 targets) a step. lr chosen on the validation split
#: where two were tried (3e-3 > 1e-3 for all four after 10 epochs). Validation, early stopping
#: and the kept weights use a moving average of the weights over about one epoch of steps
#: (``ema_epochs``; SASRec from session 13, the other three from session 18: better best
#: validation NDCG@10 on every data set tried). ``benchmarks/results/defaults.md`` lists what
#: was measured.
TRAIN_DEFAULTS = TrainSettings(
    mode=2,
    loss="softmax",
    sampler="auto",
    sampler_params={"max_full_items": MAX_FULL_ITEMS},
    lr=3e-3,
    sequence_batch_size=32,
    epochs=40,
    patience=5,
    ema_epochs=1.0,
)


@hookimpl
def rechub_register_models() -> Iterator[ModelSpec]:
    for name, (module, description) in _MODELS.items():
        yield ModelSpec(
            name=name,
            factory=f"rechub_plugins_seq.{module}:{name}",
            family=FAMILY,
            description=description,
            train_defaults=TRAIN_DEFAULTS,
        )


@hookimpl
def rechub_register_encoders() -> Iterator[EncoderSpec]:
    for name, (module, _) in _MODELS.items():
        yield EncoderSpec(
            name=module,
            factory=f"rechub_plugins_seq.{module}:{name}Encoder",
            description=f"{name} user encoder over the history",
        )
