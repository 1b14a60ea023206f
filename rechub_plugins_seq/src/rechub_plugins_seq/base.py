"""The sequential family's shared parts: the history encoder base class and the model base class.

Every encoder in this family reads one ordered history, a ``SequenceFeature`` with
``pooling=None`` (usually ``shared_with`` the item id, so history and candidates share one
table), under the core's history contract (``docs/protocol.md``,
:class:`rechub_core.history.HistoryEncoder`): the history is compacted first, so where the
zeros were in the input (left, right, or scattered) cannot change the user vector, only the
``max_len`` most recent items are read, and positions are counted from the oldest kept item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from rechub_core.errors import InputError
from rechub_core.features import Feature, SparseFeature, item_id_feature
from rechub_core.history import HistoryEncoder, renamed_keywords, restore_layout
from rechub_core.layers import EmbeddingLayer, gather_last, input_checks_enabled, l2_normalize
from rechub_core.schema import DataSchema
from rechub_core.towers import ItemEmbeddingTower, Tower, TwoTowerModel


class SequenceEncoder(HistoryEncoder):
    """Base class of the family's user encoders: ``forward(x, embedding) -> (B, D)``.

    Subclasses implement :meth:`encode` over the compacted, embedded history; the base class
    reads the history (:meth:`HistoryEncoder.read_history`), rejects empty ones, projects a
    table of another width to ``embed_dim``, and L2-normalises the output when asked.

    Args:
        features: user features; the one ``SequenceFeature`` with ``pooling=None`` is read,
            others are ignored (these models encode the history only).
        embed_dim: D, the width of the user vectors (default: the history's ``embed_dim``;
            another width projects the history's embeddings to it).
        max_len: longest history read; longer ones keep their ``max_len`` most recent items.
        normalize: L2-normalise the output (cosine scoring with the model's temperature).
    """

    model_name: ClassVar[str] = "sequence encoder"

    def __init__(
        self,
        features: Sequence[Feature],
        embed_dim: int | None = None,
        max_len: int = 50,
        normalize: bool = False,
    ) -> None:
        super().__init__(features, embed_dim, max_len, normalize)
        self.features = [self.history]
        width, dim = self.history.embed_dim, self.output_dim
        # a history table of another width is projected to D, so the encoders work in D
        self.input_proj: nn.Module = (
            nn.Identity() if width == dim else nn.Linear(width, dim, bias=False)
        )

    def embed_history(
        self, x: Mapping[str, Tensor], embedding: EmbeddingLayer
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Compacted, embedded history in D.

        Returns:
            ``emb (B, L', D)`` with zeros at padding, ``mask (B, L')`` True at real items
            (a prefix of each row), ``dest (B, L)`` where each input position went.
        """
        emb, mask, dest = self.read_history(x, embedding)  # (B, L', E), (B, L'), (B, L)
        if input_checks_enabled() and mask.numel() > 0 and not bool(mask[:, 0].all()):
            row = int((~mask[:, 0]).nonzero()[0, 0])
            raise InputError(
                f"{self.model_name}: row {row} of {self.history_name!r} has no real item (an "
                "empty history); sequential encoders need at least one past item — serve such "
                "users from a popularity or profile model"
            )
        return self.input_proj(emb), mask, dest  # (B, L', D)

    def encode(self, emb: Tensor, mask: Tensor) -> Tensor:
        """``emb (B, L, D)``, ``mask (B, L)`` (real items first) -> user vectors ``(B, D)``."""
        raise NotImplementedError

    def forward(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        """User vectors ``(B, D)`` from the history."""
        emb, mask, _ = self.embed_history(x, embedding)
        return self.finish(self.encode(emb, mask))


class StepEncoder(SequenceEncoder):
    """An encoder whose state after every position is a user vector (causal models: RNNs,
    causal self-attention). Subclasses implement :meth:`states`; the user vector is the state
    at the last real position, and :meth:`steps` gives all of them for sequence training."""

    def states(self, emb: Tensor, mask: Tensor) -> Tensor:
        """``(B, L, D)``, ``(B, L)`` -> causal states ``(B, L, D)`` (row t sees positions <= t)."""
        raise NotImplementedError

    def encode(self, emb: Tensor, mask: Tensor) -> Tensor:
        return gather_last(self.states(emb, mask), mask)  # (B, D)

    def steps(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        """User vectors after each input position ``(B, L, D)``, in the input's layout."""
        emb, mask, dest = self.embed_history(x, embedding)
        return restore_layout(self.finish(self.states(emb, mask)), dest)  # (B, L, D)


class ProjectedItemTower(Tower):
    """The item id's embedding projected to D (used when the table width is not D)."""

    def __init__(self, item_feature: SparseFeature, output_dim: int, normalize: bool) -> None:
        super().__init__()
        self.inner = ItemEmbeddingTower(item_feature)
        self.features = self.inner.features
        self.output_dim = output_dim
        self.proj = nn.Linear(item_feature.embed_dim, output_dim, bias=False)
        self.normalize = normalize

    def forward(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        vec = self.proj(self.inner(x, embedding))  # (B, D)
        return l2_normalize(vec) if self.normalize else vec


class SequentialModel(TwoTowerModel):
    """Base class of the family's models: one of the family's encoders as the user tower and
    the item id embedding (the table the history reads, projected when its width is not D) as
    the item tower, scored by a dot product (the default) or cosine / temperature. A model is
    exactly
    ``TwoTowerModel(encoder, item tower)``: the encoder registered under the model's lowercase
    name is the same module class.

    Args:
        user_features: must hold the ordered history (``SequenceFeature``, ``pooling=None``,
            ``shared_with`` the item id: input and candidate embeddings are one table).
        item_features: the item id ``SparseFeature`` (the first sparse one).
        temperature: the score is divided by it (1.0: a plain dot product).
        normalize: cosine scoring (L2-normalised towers; then a temperature near 0.05-0.1).
            The default dot product trains as well with a full softmax and far better with
            sampled negatives than cosine / 0.02 (``benchmarks/results/defaults.md``).
        **encoder_params: the encoder's settings (``embed_dim``, ``max_len``, widths,
            dropout; see the model's encoder class, :attr:`encoder_class`).
    """

    supported_modes = (0, 1, 2)
    #: D of :meth:`from_schema` (``rechub train``): 64, the field's usual width (on
    #: Toys_and_Games it beat 32); SASRec's is 128 (``benchmarks/results/defaults.md``)
    default_embed_dim: ClassVar[int] = 64
    #: the encoder class this model wraps
    encoder_class: ClassVar[type[SequenceEncoder]]

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        temperature: float = 1.0,
        normalize: bool = False,
        **encoder_params: Any,
    ) -> None:
        name = type(self).__name__
        encoder = self.encoder_class(user_features, normalize=normalize, **encoder_params)
        item_id = item_id_feature(item_features, name)
        item: Tower
        if item_id.embed_dim == encoder.output_dim:
            item = ItemEmbeddingTower(item_id, normalize=normalize)
        else:
            item = ProjectedItemTower(item_id, encoder.output_dim, normalize)
        super().__init__(encoder, item, temperature)
        self.history_feature = encoder.history_name

    def encode_user_steps(self, x: Mapping[str, Tensor]) -> Tensor:
        """User vectors after every history position ``(B, L, D)``, for encoders whose states
        are causal (GRU4Rec, SASRec); used when ``trains_on_sequences`` is set."""
        if not isinstance(self.user_tower, StepEncoder):
            raise InputError(f"{type(self).__name__} has no per-position user vectors")
        return self.user_tower.steps(x, self.embedding)

    @classmethod
    @renamed_keywords(embedding_dim="embed_dim")
    def from_schema(cls, schema: DataSchema, embed_dim: int | None = None, **params: Any) -> Any:
        """The model over the data set's ordered history (sharing the item id table), D =
        ``embed_dim`` (default :attr:`default_embed_dim`); ``params`` go to the model (and
        through it to its encoder)."""
        embed_dim = cls.default_embed_dim if embed_dim is None else embed_dim
        params.setdefault("max_len", schema.max_len)
        user = [schema.history(embed_dim, pooling=None)]
        return cls(user, [schema.item_id(embed_dim)], **params)
