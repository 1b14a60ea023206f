"""The core's built-in components, registered like any plugin's (hidden from
``rechub list-plugins`` unless ``--all``).

Factories are lazy ``"module:Class"`` strings, so listing components imports no torch."""

from __future__ import annotations

from collections.abc import Iterator

from rechub_core.hookspecs import hookimpl
from rechub_core.specs import IndexSpec, LossSpec, SamplerSpec, TowerSpec


@hookimpl
def rechub_register_losses() -> Iterator[LossSpec]:
    yield LossSpec(
        name="bce", factory="rechub_core.losses:BCELoss", description="point-wise BCE (mode 0)"
    )
    yield LossSpec(
        name="bpr", factory="rechub_core.losses:BPRLoss", description="pair-wise BPR (mode 1)"
    )
    yield LossSpec(
        name="hinge",
        factory="rechub_core.losses:HingeLoss",
        description="pair-wise triplet hinge (mode 1)",
    )
    yield LossSpec(
        name="softmax",
        factory="rechub_core.losses:SoftmaxLoss",
        description="list-wise softmax over candidates (mode 2)",
    )
    yield LossSpec(
        name="sampled_softmax",
        factory="rechub_core.losses:SampledSoftmaxLoss",
        description="softmax with logQ correction (mode 2)",
    )


@hookimpl
def rechub_register_samplers() -> Iterator[SamplerSpec]:
    yield SamplerSpec(
        name="none",
        factory="rechub_core.samplers:NoSampler",
        description="explicit labels, no negatives",
    )
    yield SamplerSpec(
        name="uniform",
        factory="rechub_core.samplers:UniformSampler",
        description="uniform, never the positive",
    )
    yield SamplerSpec(
        name="full",
        factory="rechub_core.samplers:FullCatalogueSampler",
        description="every item (full softmax)",
    )
    yield SamplerSpec(
        name="auto",
        factory="rechub_core.samplers:AutoSoftmaxSampler",
        description=(
            "full softmax up to 5,000 items (a model may raise it), "
            "else 512 shared uniform negatives"
        ),
    )
    yield SamplerSpec(
        name="popularity",
        factory="rechub_core.samplers:PopularitySampler",
        description="count ** alpha",
    )
    yield SamplerSpec(
        name="in_batch",
        factory="rechub_core.samplers:InBatchSampler",
        description="other rows' positives",
    )
    yield SamplerSpec(
        name="mixed",
        factory="rechub_core.samplers:MixedSampler",
        description="in-batch + shared uniform",
    )
    yield SamplerSpec(
        name="hard",
        factory="rechub_core.samplers:HardNegativeSampler",
        description="mined from current item vectors",
    )


@hookimpl
def rechub_register_indexes() -> Iterator[IndexSpec]:
    yield IndexSpec(
        name="exact",
        factory="rechub_core.index:ExactIndex",
        description="exact inner product (numpy)",
    )
    yield IndexSpec(
        name="faiss", factory="rechub_core.index:FaissIndex", description="faiss flat / hnsw / ivf"
    )


@hookimpl
def rechub_register_towers() -> Iterator[TowerSpec]:
    yield TowerSpec(
        name="item_embedding",
        factory="rechub_core.towers:ItemEmbeddingTower",
        description="item id embedding",
    )
    yield TowerSpec(
        name="mlp", factory="rechub_core.towers:MLPTower", description="features -> MLP"
    )
