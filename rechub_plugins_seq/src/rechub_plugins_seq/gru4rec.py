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
from rechub_core.history import renamed_keywords
from rechub_plugins_seq.base import SequentialModel, StepEncoder


class GRU4RecEncoder(StepEncoder):
    """GRU over the history -> state after the last real item -> Linear -> ``(B, D)``.

    Args:
        features: user features holding the history (``SequenceFeature``, ``pooling=None``).
        embed_dim: D (default: the history's embed_dim).
        hidden_size: GRU width.
        num_layers: stacked GRU layers.
        dropout: on the input embeddings, between GRU layers and before the output layer.
        max_len: longest history read (the most recent items are kept).
        normalize: L2-normalise the output.
    """

    model_name = "GRU4Rec"

    @renamed_keywords(embedding_dim="embed_dim")
    def __init__(
        self,
        features: Sequence[Feature],
        embed_dim: int | None = None,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        max_len: int = 50,
        normalize: bool = False,
    ) -> None:
        super().__init__(features, embed_dim, max_len, normalize)
        d = self.output_dim
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            d,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.out = nn.Linear(hidden_size, d)

    def states(self, emb: Tensor, mask: Tensor) -> Tensor:
        h, _ = self.gru(self.dropout(emb))  # (B, L, H); compacted, so row t saw only real items
        return self.out(self.dropout(h))  # (B, L, D)


class GRU4Rec(SequentialModel):
    """GRU4Rec (Hidasi et al., 2015) as a two-tower retrieval model.

    ``GRU4Rec(user_features, item_features, temperature=1.0, normalize=False,
    **encoder_params)``: the arguments of :class:`~rechub_plugins_seq.base.SequentialModel`;
    ``encoder_params`` are :class:`GRU4RecEncoder`'s
    (``embed_dim``, ``hidden_size``, ``num_layers``, ``dropout``, ``max_len``).
    """

    encoder_class = GRU4RecEncoder
    trains_on_sequences = True
