"""GRU4Rec — Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016 (arXiv 2015).

A GRU reads the history; the user vector is its state after the last real item (projected to
D). Histories are compacted first (see :mod:`rechub_plugins_seq.base`), so padding never feeds
the state that is read.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from rechub_core.features import Feature
from rechub_plugins_seq.base import SequentialModel, StepEncoder


class GRU4RecEncoder(StepEncoder):
    """GRU over the history -> state after the last real item -> Linear -> ``(B, D)``.

    Args:
        features: user features holding the history (``SequenceFeature``, ``pooling=None``).
        embedding_dim: D.
        hidden_size: GRU width.
        num_layers: stacked GRU layers.
        dropout: on the input embeddings, between GRU layers and before the output layer.
        max_len: longest history read (the most recent items are kept).
        normalize: L2-normalise the output.
    """

    model_name = "GRU4Rec"

    def __init__(
        self,
        features: Sequence[Feature],
        embedding_dim: int = 32,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        max_len: int = 50,
        normalize: bool = False,
    ) -> None:
        super().__init__(features, embedding_dim, max_len, normalize)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.out = nn.Linear(hidden_size, embedding_dim)

    def states(self, emb: Tensor, mask: Tensor) -> Tensor:
        h, _ = self.gru(self.dropout(emb))  # (B, L, H); compacted, so row t saw only real items
        return self.out(self.dropout(h))  # (B, L, D)


class GRU4Rec(SequentialModel):
    """GRU4Rec (Hidasi et al., 2015) as a two-tower retrieval model.

    Args:
        user_features: must hold the ordered history (``SequenceFeature``, ``pooling=None``,
            ``shared_with`` the item id).
        item_features: the item id ``SparseFeature`` (first sparse one).
        embedding_dim: D of user and item vectors.
        hidden_size: GRU width.
        num_layers: GRU layers.
        dropout: dropout probability.
        temperature: cosine similarity is divided by it.
        max_len: longest history read.
        normalize: cosine scoring (L2-normalised towers).
    """

    encoder_class = GRU4RecEncoder
    trains_on_sequences = True

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        embedding_dim: int = 32,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        temperature: float = 0.02,
        max_len: int = 50,
        normalize: bool = True,
    ) -> None:
        super().__init__(
            user_features,
            item_features,
            temperature,
            normalize,
            embedding_dim=embedding_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=dropout,
            max_len=max_len,
        )
