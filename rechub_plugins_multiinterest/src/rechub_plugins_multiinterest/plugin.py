"""Registration of the multi-interest models and encoders with rechub (entry point
``rechub: multiinterest``).

Registered lazily (``"module:Class"``): listing them imports neither torch nor the model
modules. Their training modes are MultiInterestModel.supported_modes (mode 2), read by
``ModelSpec.modes`` on first use.
"""

from __future__ import annotations

from collections.abc import Iterator

from rechub_core.hookspecs import hookimpl
from rechub_core.specs import EncoderSpec, ModelSpec, TrainSettings

FAMILY = "multi_interest"
_PKG = "rechub_plugins_multiinterest"

#: softmax by the catalogue-size rule (sampler ``auto``: exact up to 5,000 items, else 512 shared
#: uniform negatives) on the training rows (lr tuned on ComirecSA, validation)
SOFTMAX_DEFAULTS = TrainSettings(
    mode=2, loss="softmax", sampler="auto", lr=3e-3, epochs=30, patience=3
)


@hookimpl
def rechub_register_models() -> Iterator[ModelSpec]:
    for name, module, description in (
        (
            "MIND",
            "mind",
            "capsule routing with a shared bilinear map, label-aware attention (CIKM 2019)",
        ),
        (
            "SINE",
            "sine",
            "sparse interests from a concept pool, covariance regulariser (WSDM 2021)",
        ),
        (
            "ComirecDR",
            "comirec_dr",
            "dynamic-routing interests, controllable aggregation (KDD 2020)",
        ),
        (
            "ComirecSA",
            "comirec_sa",
            "self-attentive interests, controllable aggregation (KDD 2020)",
        ),
    ):
        yield ModelSpec(
            name=name,
            factory=f"{_PKG}.{module}:{name}",
            family=FAMILY,
            description=description,
            train_defaults=SOFTMAX_DEFAULTS,
        )


@hookimpl
def rechub_register_encoders() -> Iterator[EncoderSpec]:
    yield EncoderSpec(
        name="mind",
        factory=f"{_PKG}.mind:MINDEncoder",
        multi_interest=True,
        description="MIND's routing encoder",
    )
    yield EncoderSpec(
        name="sine",
        factory=f"{_PKG}.sine:SINEEncoder",
        multi_interest=True,
        description="SINE's sparse-interest encoder",
    )
    yield EncoderSpec(
        name="comirec_dr",
        factory=f"{_PKG}.comirec_dr:ComirecDREncoder",
        multi_interest=True,
        description="ComiRec-DR's routing encoder",
    )
    yield EncoderSpec(
        name="comirec_sa",
        factory=f"{_PKG}.comirec_sa:ComirecSAEncoder",
        multi_interest=True,
        description="ComiRec-SA's attentive encoder",
    )
