"""NARM — Li et al., "Neural Attentive Session-based Recommendation", CIKM 2017.

A GRU encodes the history; the global encoder is its state after the last real item, the local
encoder an attention over all real states with the last state as the query
(``alpha_j = v^T sigmoid(A1 h_t + A2 h_j)``). Their concatenation is mapped to D (the paper's
bilinear decoder, with the item embedding on the other side).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rechub_core.features import Feature
from rechub_core.history import renamed_keywords
from rechub_core.layers import PackedPositions, gather_last
from rechub_plugins_seq.base import SequentialModel, StepEncoder


class NARMEncoder(StepEncoder):
    """GRU states -> [global last state; attention-pooled states] -> Linear -> ``(B, D)``.

    Args:
        features: user features holding the history.
        embed_dim: D (default: the history's embed_dim).
        hidden_size: GRU and attention width.
        num_layers: GRU layers.
        dropout: on the embeddings and on the combined representation.
        max_len: longest history read.
        normalize: L2-normalise the output.
    """

    model_name = "NARM"

    @renamed_keywords(embedding_dim="embed_dim")
    def __init__(
        self,
        features: Sequence[Feature],
        embed_dim: int | None = None,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.2,
        max_len: int = 50,
        normalize: bool = False,
    ) -> None:
        super().__init__(features, embed_dim, max_len, normalize)
        d = self.output_dim
        self.emb_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            d,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.a1 = nn.Linear(hidden_size, hidden_size, bias=False)
        self.a2 = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v = nn.Linear(hidden_size, 1, bias=False)
        self.ct_dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden_size, d, bias=False)

    def _combine(self, h: Tensor, keys: Tensor, c_global: Tensor, allowed: Tensor) -> Tensor:
        """Per query: the states it reads ``h (Q, L, H)`` and their keys ``a2(h) (Q, L, H)``,
        its global state ``c_global (Q, H)`` and ``allowed (Q, L)`` -> ``(Q, D)``: the global
        state with its attention-pooled local state."""
        q = self.a1(c_global).unsqueeze(1)  # (Q, 1, H)
        alpha = self.v(torch.sigmoid(q + keys)).squeeze(-1)  # (Q, L)
        alpha = alpha * allowed.to(alpha.dtype)  # (Q, L): padding (and the future) do not count
        c_local = (alpha.unsqueeze(1) @ h).squeeze(1)  # (Q, H)
        c = self.ct_dropout(torch.cat([c_global, c_local], dim=-1))  # (Q, 2H)
        return self.out(c)  # (Q, D)

    def encode(self, emb: Tensor, mask: Tensor) -> Tensor:
        h, _ = self.gru(self.emb_dropout(emb))  # (B, L, H)
        return self._combine(h, self.a2(h), gather_last(h, mask), mask)  # (B, D)

    def states(self, emb: Tensor, mask: Tensor) -> Tensor:
        h, _ = self.gru(self.emb_dropout(emb))  # (B, L, H)
        # one query per real position (not B x L: most of a batch is padding), each reading
        # its own row's states up to itself
        packed = PackedPositions.from_mask(mask)
        rows = packed.rows
        h_rows, keys = h.index_select(0, rows), self.a2(h).index_select(0, rows)  # (n, L, H)
        out = self._combine(h_rows, keys, packed.pack(h), packed.causal_keys(mask))  # (n, D)
        return packed.unpack(out)  # (B, L, D), zeros at padding


class NARM(SequentialModel):
    """NARM (Li et al., CIKM 2017) as a two-tower retrieval model.

    ``NARM(user_features, item_features, temperature=1.0, normalize=False,
    **encoder_params)``: the arguments of :class:`~rechub_plugins_seq.base.SequentialModel`;
    ``encoder_params`` are :class:`NARMEncoder`'s
    (``embed_dim``, ``hidden_size``, ``num_layers``, ``dropout``, ``max_len``).
    """

    encoder_class = NARMEncoder
    trains_on_sequences = True
