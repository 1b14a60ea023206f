"""Registration of the DSSM-family models with rechub (entry point ``rechub: dssm``).

Models are registered lazily (``"module:Class"``): listing them imports neither torch nor the
model modules; ``create`` / ``get_spec(...).factory`` imports one on first use. The training
modes a model supports are its class's ``supported_modes`` (``ModelSpec.modes`` reads them).
"""

from __future__ import annotations

from collections.abc import Iterator

from rechub_core.hookspecs import hookimpl
from rechub_core.specs import ModelSpec, TrainSettings

FAMILY = "dssm"
_PKG = "rechub_plugins_dssm"

#: softmax by the catalogue-size rule (sampler ``auto``: exact full softmax up to 5,000 items,
#: so MovieLens-100K trains as before, else 512 shared uniform negatives; on Toys_and_Games
#: DSSM then trains 5x faster an epoch to a better validation NDCG@10,
#: ``benchmarks/results/defaults.md``); lr 3e-3 chosen over 1e-3 on MovieLens-100K validation
SOFTMAX_DEFAULTS = TrainSettings(mode=2, loss="softmax", sampler="auto", lr=3e-3)


@hookimpl
def rechub_register_models() -> Iterator[ModelSpec]:
    yield ModelSpec(
        name="DSSM",
        factory=f"{_PKG}.dssm:DSSM",
        family=FAMILY,
        description="two MLP towers, cosine / temperature (CIKM 2013)",
        train_defaults=SOFTMAX_DEFAULTS,
    )
    yield ModelSpec(
        name="FaceBookDSSM",
        factory=f"{_PKG}.facebook_dssm:FaceBookDSSM",
        family=FAMILY,
        description="deeper cosine towers, pair-wise with hard negatives (KDD 2020)",
        train_defaults=TrainSettings(
            mode=1,
            loss="bpr",
            sampler="hard",
            # the paper's blend: mostly easy (uniform) negatives, a few hard ones from ranks
            # 101-500; 8 hard of 32 from ranks 21-200 collapsed on Toys_and_Games (best
            # validation after epoch 1, test 1.05x MostPop; benchmarks/results/defaults.md).
            # Catalogues above 2,049 items draw both kinds from a pool of 2,048 items a batch
            # (the hard ones at the pool ranks matching 101-500): on Toys_and_Games 18.7 s an
            # epoch instead of 61 s, validation as good (defaults.md)
            sampler_params={
                "n_neg": 32,
                "n_hard": 1,
                "rank_from": 100,
                "rank_to": 500,
                "pool": 2048,
            },
            lr=3e-3,
        ),
    )
    yield ModelSpec(
        name="YoutubeDNN",
        factory=f"{_PKG}.youtube_dnn:YoutubeDNN",
        family=FAMILY,
        description="history/profile MLP vs. shared item embedding, softmax (RecSys 2016)",
        train_defaults=SOFTMAX_DEFAULTS,
    )
    yield ModelSpec(
        name="YoutubeSBC",
        factory=f"{_PKG}.youtube_sbc:YoutubeSBC",
        family=FAMILY,
        description="in-batch softmax with streaming logQ correction (RecSys 2019)",
        train_defaults=TrainSettings(
            mode=2,
            loss="sampled_softmax",
            loss_params={"logq_correction": True},
            sampler="in_batch",
            sampler_params={"frequency": "streaming"},
            batch_size=1024,
            lr=3e-3,
        ),
    )
