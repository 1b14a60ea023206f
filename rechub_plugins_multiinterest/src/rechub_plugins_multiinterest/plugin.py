"""Registration of the multi-interest models and encoders with rechub (entry point
``rechub: multiinterest``)."""

from __future__ import annotations

from collections.abc import Iterator

from rechub_core.hookspecs import hookimpl
from rechub_core.specs import EncoderSpec, ModelSpec, TrainDefaults
from rechub_plugins_multiinterest.comirec_dr import ComirecDR, ComirecDREncoder
from rechub_plugins_multiinterest.comirec_sa import ComirecSA, ComirecSAEncoder
from rechub_plugins_multiinterest.mind import MIND, MINDEncoder
from rechub_plugins_multiinterest.sine import SINE, SINEEncoder

FAMILY = "multi_interest"

#: an exact softmax over the catalogue on the training rows (lr tuned on ComirecSA, validation)
FULL_SOFTMAX = TrainDefaults(
    mode=2, loss="softmax", sampler="full", lr=3e-3, max_epochs=30, patience=3
)


@hookimpl
def rechub_register_models() -> Iterator[ModelSpec]:
    for cls, description in (
        (MIND, "capsule routing with a shared bilinear map, label-aware attention (CIKM 2019)"),
        (SINE, "sparse interests from a concept pool, covariance regulariser (WSDM 2021)"),
        (ComirecDR, "dynamic-routing interests, controllable aggregation (KDD 2020)"),
        (ComirecSA, "self-attentive interests, controllable aggregation (KDD 2020)"),
    ):
        yield ModelSpec(
            name=cls.__name__,
            factory=cls,
            family=FAMILY,
            modes=cls.supported_modes,
            from_schema=cls.from_schema,
            description=description,
            train_defaults=FULL_SOFTMAX,
        )


@hookimpl
def rechub_register_encoders() -> Iterator[EncoderSpec]:
    yield EncoderSpec(
        name="mind", factory=MINDEncoder, multi_interest=True, description="MIND's routing encoder"
    )
    yield EncoderSpec(
        name="sine",
        factory=SINEEncoder,
        multi_interest=True,
        description="SINE's sparse-interest encoder",
    )
    yield EncoderSpec(
        name="comirec_dr",
        factory=ComirecDREncoder,
        multi_interest=True,
        description="ComiRec-DR's routing encoder",
    )
    yield EncoderSpec(
        name="comirec_sa",
        factory=ComirecSAEncoder,
        multi_interest=True,
        description="ComiRec-SA's attentive encoder",
    )
