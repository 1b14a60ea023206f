"""The core's built-in components, registered like any plugin's (hidden from
``rechub list-plugins`` unless ``--all``)."""

from __future__ import annotations

from collections.abc import Iterator

from rechub_core.hookspecs import hookimpl
from rechub_core.specs import IndexSpec, LossSpec, SamplerSpec, TowerSpec


@hookimpl
def rechub_register_losses() -> Iterator[LossSpec]:
    from rechub_core import losses

    yield LossSpec(name="bce", factory=losses.BCELoss, description="point-wise BCE (mode 0)")
    yield LossSpec(name="bpr", factory=losses.BPRLoss, description="pair-wise BPR (mode 1)")
    yield LossSpec(
        name="hinge", factory=losses.HingeLoss, description="pair-wise triplet hinge (mode 1)"
    )
    yield LossSpec(
        name="softmax",
        factory=losses.SoftmaxLoss,
        description="list-wise softmax over candidates (mode 2)",
    )
    yield LossSpec(
        name="sampled_softmax",
        factory=losses.SampledSoftmaxLoss,
        description="softmax with logQ correction (mode 2)",
    )


@hookimpl
def rechub_register_samplers() -> Iterator[SamplerSpec]:
    from rechub_core import samplers

    yield SamplerSpec(
        name="none", factory=samplers.NoSampler, description="explicit labels, no negatives"
    )
    yield SamplerSpec(
        name="uniform", factory=samplers.UniformSampler, description="uniform, never the positive"
    )
    yield SamplerSpec(
        name="full", factory=samplers.FullCatalogueSampler, description="every item (full softmax)"
    )
    yield SamplerSpec(
        name="popularity", factory=samplers.PopularitySampler, description="count ** alpha"
    )
    yield SamplerSpec(
        name="in_batch", factory=samplers.InBatchSampler, description="other rows' positives"
    )
    yield SamplerSpec(
        name="mixed", factory=samplers.MixedSampler, description="in-batch + shared uniform"
    )
    yield SamplerSpec(
        name="hard",
        factory=samplers.HardNegativeSampler,
        description="mined from current item vectors",
    )


@hookimpl
def rechub_register_indexes() -> Iterator[IndexSpec]:
    from rechub_core import index

    yield IndexSpec(
        name="exact", factory=index.ExactIndex, description="exact inner product (torch)"
    )
    yield IndexSpec(name="faiss", factory=index.FaissIndex, description="faiss flat / hnsw / ivf")


@hookimpl
def rechub_register_towers() -> Iterator[TowerSpec]:
    from rechub_core import towers

    yield TowerSpec(
        name="item_embedding", factory=towers.ItemEmbeddingTower, description="item id embedding"
    )
    yield TowerSpec(name="mlp", factory=towers.MLPTower, description="features -> MLP")
