"""What the multi-interest models share: the encoder and model base classes, capsule routing,
causal history context layers, and retrieval with K interests (merge and ComiRec's
controllable aggregation).

Every encoder here computes its K interests for a batch of *query positions*: ``vis (B, T, L)``
says which history positions each query may read. ``encode_user`` asks one query that sees the
whole history (``T = 1``); sequence training (``encode_user_steps``) asks one query per position
that sees only the positions up to it, so one implementation serves both and the user vector of
a history equals the training-time vector at its last position.

Shapes: B batch, T query positions, L history length, K interests, D width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from rechub_core.errors import InputError
from rechub_core.features import Feature, item_id_feature
from rechub_core.history import HistoryEncoder, last_position, renamed_keywords, restore_layout
from rechub_core.layers import CausalSelfAttentionBlock, EmbeddingLayer, causal_mask
from rechub_core.schema import DataSchema
from rechub_core.towers import ItemEmbeddingTower, TwoTowerModel

# --------------------------------------------------------------------------- routing helpers


def squash(s: Tensor, dim: int = -1, eps: float = 1e-9) -> Tensor:
    """Capsule non-linearity ``|s|^2 / (1 + |s|^2) * s / |s|`` (Sabour et al., 2017); zero
    vectors stay zero."""
    sq = (s * s).sum(dim=dim, keepdim=True)
    return s * (sq / (1.0 + sq)) / torch.sqrt(sq + eps)


def dynamic_routing(
    votes: Tensor, vis: Tensor, iterations: int, init_logits: Tensor | None = None
) -> Tensor:
    """Behaviour-to-interest dynamic routing for every query position.

    Args:
        votes: ``(B, L, K, D)`` what behaviour ``l`` proposes for interest ``k`` (ComiRec-DR:
            one map per interest), or ``(B, L, D)`` when every interest gets the same vote
            (MIND's shared bilinear map; cheaper than expanding it K times).
        vis: ``(B, T, L)`` bool, the behaviours each query routes.
        iterations: routing iterations (>= 1; 1 is a single weighted sum).
        init_logits: ``(B, L, K)`` initial routing logits (zeros when None).
    Returns:
        ``(B, T, K, D)`` squashed interest capsules.
    """
    if iterations < 1:
        raise InputError(f"routing iterations must be >= 1, got {iterations}")
    b, t, n = vis.shape
    shared = votes.dim() == 3
    if shared and init_logits is None:
        raise InputError(
            "shared votes (B, L, D) need init_logits (B, L, K) to tell the K interests apart"
        )
    k = init_logits.shape[-1] if shared and init_logits is not None else votes.shape[2]
    pool, agree = (
        ("btlk,bld->btkd", "bld,btkd->btlk") if shared else ("btlk,blkd->btkd", "blkd,btkd->btlk")
    )
    if init_logits is None:
        logits = votes.new_zeros(b, t, n, k)  # (B, T, L, K)
    else:
        logits = init_logits.unsqueeze(1).expand(b, t, n, k)  # (B, T, L, K)
    weight_mask = vis.unsqueeze(-1).to(votes.dtype)  # (B, T, L, 1)
    caps = votes.new_zeros(b, t, k, votes.shape[-1])
    for it in range(iterations):
        coupling = torch.softmax(logits, dim=-1) * weight_mask  # (B, T, L, K)
        # the agreement updates see the votes without gradient (as in ComiRec), so only the
        # last iteration's weighted sum trains the maps; it keeps routing stable
        source = votes if it == iterations - 1 else votes.detach()
        caps = squash(torch.einsum(pool, coupling, source))  # (B, T, K, D)
        if it < iterations - 1:
            logits = logits + torch.einsum(agree, votes.detach(), caps)  # (B, T, L, K)
    return caps


# --------------------------------------------------------------------------- history context


class HistoryContext(nn.Module):
    """``num_layers`` causal Transformer blocks over the history with learned absolute positions
    counted from the oldest item (right padding leaves them unchanged); ``num_layers = 0`` is
    the identity.

    Args:
        dim: D.
        num_layers: blocks.
        num_heads: attention heads.
        hidden_size: feed-forward width.
        dropout: dropout in the blocks and on the input.
        max_len: positional capacity (longest history accepted).
    """

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        hidden_size: int,
        dropout: float,
        max_len: int,
    ) -> None:
        super().__init__()
        if num_layers < 0:
            raise InputError(f"num_layers must be >= 0, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout}")
        self.max_len = max_len
        # Xavier init and no dropout inside the feed-forward: what these blocks always had
        self.blocks = nn.ModuleList(
            CausalSelfAttentionBlock(
                dim, num_heads, hidden_size, dropout, ffn_dropout=False, init="xavier"
            )
            for _ in range(num_layers)
        )
        self.position = nn.Embedding(max_len, dim) if num_layers else None
        if self.position is not None:
            nn.init.normal_(self.position.weight, std=0.02)
        self.norm = nn.LayerNorm(dim) if num_layers else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, emb: Tensor, mask: Tensor) -> Tensor:
        """``emb (B, L, D)``, ``mask (B, L)`` -> contextual states ``(B, L, D)`` (zeros at
        padding)."""
        if not self.blocks:
            return emb
        assert self.position is not None and self.norm is not None
        n = emb.shape[1]
        h = self.dropout(emb + self.position.weight[:n].unsqueeze(0))  # (B, L, D)
        causal = causal_mask(n, emb.device)  # (L, L)
        allowed = causal.unsqueeze(0) & mask.unsqueeze(1)  # (B, L, L)
        # a padding query that sees nothing would attend uniformly; let it see itself instead
        # (the diagonal as causal & causal.T: torch.eye exports to an op onnxruntime lacks)
        allowed = allowed | (causal & causal.T).unsqueeze(0)
        for block in self.blocks:
            h = block(h, allowed)  # (B, L, D)
        return self.norm(h) * mask.unsqueeze(-1).to(h.dtype)  # (B, L, D)


# --------------------------------------------------------------------------- encoders


class MultiInterestEncoder(HistoryEncoder):
    """Base class of the user encoders: a history (``SequenceFeature`` with ``pooling=None``,
    normally ``shared_with`` the item id), read under the core's history contract
    (:class:`~rechub_core.history.HistoryEncoder`: compacted, the newest ``max_len`` items)
    -> K interests.

    Subclasses implement :meth:`interests`. Called as a tower, ``encoder(x, embedding)``
    returns ``(B, K, D)`` (L2-normalised when ``normalize``), in training and in evaluation;
    :meth:`steps` returns ``(B, L, K, D)``, row ``t`` using positions ``<= t`` only.

    An all-padding (empty) history gives a defined vector (every weight spreads over zero
    embeddings), never NaN.

    Args:
        features: the history plus any profile features.
        n_interest: K.
        embed_dim: D; None takes the history's ``embed_dim`` (another value is an error:
            interests are sums of history embeddings).
        max_len: longest history read (positional capacity; None: unlimited).
        normalize: L2-normalise the interests.
    """

    multi_interest = True
    model_name: ClassVar[str] = "multi-interest encoder"

    def __init__(
        self,
        features: Sequence[Feature],
        n_interest: int,
        embed_dim: int | None = None,
        max_len: int | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__(features, embed_dim, max_len, normalize)
        if embed_dim is not None and embed_dim != self.history.embed_dim:
            raise InputError(
                f"{type(self).__name__} embed_dim={embed_dim} but the history feature "
                f"{self.history.name!r} has embed_dim={self.history.embed_dim}; drop embed_dim "
                "(it defaults to the history's) or declare the history with that width"
            )
        if not isinstance(n_interest, int) or n_interest < 1:
            raise InputError(f"n_interest must be a positive int, got {n_interest!r}")
        self.n_interest = n_interest

    def interests(
        self,
        x: Mapping[str, Tensor],
        embedding: EmbeddingLayer,
        emb: Tensor,
        mask: Tensor,
        vis: Tensor,
        last: Tensor,
    ) -> Tensor:
        """K interests per query: ``(B, T, K, D)``.

        Args:
            x: the batch (for profile features).
            embedding: the model's embedding tables.
            emb: ``(B, L, D)`` compacted history embeddings; mask ``(B, L)``.
            vis: ``(B, T, L)`` positions each query reads.
            last: ``(B, T)`` index of each query's most recent visible position (relative
                positions are measured from it).
        """
        raise NotImplementedError

    def whole_history(
        self, x: Mapping[str, Tensor], embedding: EmbeddingLayer
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The one query that sees the whole history: ``emb (B, L, D)``, ``mask (B, L)``,
        ``vis (B, 1, L)``, ``last (B, 1)``."""
        emb, mask, _ = self.read_history(x, embedding)  # (B, L, D), (B, L)
        return emb, mask, mask.unsqueeze(1), last_position(mask).unsqueeze(1)

    def forward(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        """``(B, K, D)`` interests from the whole history."""
        emb, mask, vis, last = self.whole_history(x, embedding)
        return self.finish(self.interests(x, embedding, emb, mask, vis, last)[:, 0])  # (B, K, D)

    def steps(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        """``(B, L, K, D)`` in the input's layout: row ``t`` from history positions ``<= t``."""
        emb, mask, dest = self.read_history(x, embedding)  # (B, L', D), (B, L'), (B, L)
        n = emb.shape[1]
        vis = causal_mask(n, emb.device).unsqueeze(0) & mask.unsqueeze(1)  # (B, L', L')
        last = torch.arange(n, device=emb.device).unsqueeze(0).expand(emb.shape[0], n)
        out = self.interests(x, embedding, emb, mask, vis, last)  # (B, L', K, D)
        return restore_layout(self.finish(out), dest)  # (B, L, K, D)

    def regularization(self) -> Tensor | None:
        """Extra loss term (SINE's covariance regulariser); None by default."""
        return None


def relative_positions(last: Tensor, length: int, capacity: int) -> Tensor:
    """Distance of each history position from each query's most recent position:
    ``last (B, T)`` -> ``(B, T, L)`` ints in ``[0, capacity)`` (future/padding positions are
    clamped; they are masked anyway)."""
    pos = torch.arange(length, device=last.device).view(1, 1, -1)  # (1, 1, L)
    return (last.unsqueeze(-1) - pos).clamp(min=0, max=capacity - 1)  # (B, T, L)


# --------------------------------------------------------------------------- models


class MultiInterestModel(TwoTowerModel):
    """A multi-interest encoder against the (shared) item id embedding, cosine / temperature.

    Trained list-wise on the training rows (one target with its history each): ``logits``
    scores each candidate with one training vector per row (the interest closest to the
    positive, unless a model says otherwise); evaluation takes the max over interests, i.e.
    merges the K per-interest result lists by best score. ``encode_user_steps`` (``(B, L, K,
    D)``, causal) is offered for sequence training; the models do not set
    ``trains_on_sequences`` because row training gives ~200 optimiser steps an epoch on
    MovieLens-100K against ~8 for whole sequences and trained better in the same time.

    The temperature (default 0.05) divides the cosine; 0.05 rather than 0.02 because sampled
    negatives (catalogues above 5,000 items) train poorly at 0.02
    (``benchmarks/results/defaults.md``).
    """

    supported_modes = (2,)
    multi_interest = True
    #: the encoder class this model wraps
    encoder_class: ClassVar[type[MultiInterestEncoder]]

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        temperature: float = 0.05,
        **encoder_params: Any,
    ) -> None:
        encoder = self.encoder_class(user_features, **encoder_params)
        item_id = item_id_feature(item_features, type(self).__name__)
        if item_id.embed_dim != encoder.output_dim:
            raise InputError(
                f"{type(self).__name__}: the item id {item_id.name!r} has embed_dim "
                f"{item_id.embed_dim} but the history {encoder.history_name!r} has "
                f"{encoder.output_dim}; declare both features with the same embed_dim"
            )
        super().__init__(encoder, ItemEmbeddingTower(item_id, normalize=True), temperature)
        self.history_feature = encoder.history_name

    @property
    def encoder(self) -> MultiInterestEncoder:
        """The user encoder."""
        return self.user_tower  # type: ignore[return-value]

    @classmethod
    @renamed_keywords(embedding_dim="embed_dim")
    def from_schema(cls, schema: DataSchema, embed_dim: int = 64, **params: Any) -> Self:
        """The history (shared with the item id) against the item id, D = ``embed_dim``,
        for the family's models with context blocks (MIND overrides it)."""
        params.setdefault("max_len", schema.max_len)
        # the defaults `rechub train` uses: no context blocks and a narrow attention, because
        # row training re-encodes a 50-item history for every one of ~100k rows an epoch
        params.setdefault("num_layers", 0)
        params.setdefault("hidden_size", 32)
        user = [schema.history(embed_dim, pooling=None)]
        return cls(user, [schema.item_id(embed_dim)], **params)

    def encode_user_steps(self, x: Mapping[str, Tensor]) -> Tensor:
        """``(B, L, K, D)`` interests after each history position."""
        return self.encoder.steps(x, self.embedding)

    def logits(self, user: Tensor, items: Tensor, target_index: Tensor | None = None) -> Tensor:
        """As the core's, but training reduces the interests to one vector per row first
        (:meth:`training_vector`), so memory is ``(B, C)`` rather than ``(B, K, C)``."""
        if target_index is None or user.dim() == 2:
            return super().logits(user, items, target_index)
        if items.dim() == 2:
            target = items[target_index]  # (B, D)
        else:
            rows = torch.arange(items.shape[0], device=items.device)
            target = items[rows, target_index]  # (B, D)
        return super().logits(self.training_vector(user, target), items)

    def training_vector(self, user: Tensor, target: Tensor) -> Tensor:
        """The vector a training row is scored with: the interest closest to the positive
        (ComiRec's selection). ``user (B, K, D)``, ``target (B, D)`` -> ``(B, D)``."""
        sims = torch.einsum("bkd,bd->bk", user, target)  # (B, K)
        best = sims.argmax(dim=1)  # (B,)
        return user[torch.arange(user.shape[0], device=user.device), best]  # (B, D)


# --------------------------------------------------------------------------- retrieval


def _scores(user: Tensor, items: Tensor, exclude: Tensor | None) -> Tensor:
    """Per-interest scores ``(B, K, N)`` with excluded items at -inf."""
    if user.dim() == 2:
        user = user.unsqueeze(1)  # (B, 1, D)
    per = torch.einsum("bkd,nd->bkn", user, items)  # (B, K, N)
    if exclude is not None:
        per = per.masked_fill(exclude.unsqueeze(1), float("-inf"))
    return per


def merge_interest_topk(
    user: Tensor, items: Tensor, k: int, exclude: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Retrieve ``k`` items per interest and merge the K lists by best score, without
    duplicates.

    Args:
        user: ``(B, K, D)`` interests (or ``(B, D)``).
        items: ``(N, D)`` item vectors (row 0 is padding: exclude it).
        k: items returned per user.
        exclude: ``(B, N)`` bool, items never returned (padding, already seen).
    Returns:
        ``(scores (B, k), ids (B, k))``, best first.
    """
    per = _scores(user, items, exclude)  # (B, K, N)
    top_s, top_i = per.topk(min(k, per.shape[-1]), dim=-1)  # (B, K, k)
    merged = torch.full(per.shape[::2], float("-inf"), dtype=per.dtype, device=per.device)  # (B, N)
    merged = merged.scatter_reduce(1, top_i.flatten(1), top_s.flatten(1), reduce="amax")  # (B, N)
    return merged.topk(min(k, merged.shape[-1]), dim=-1)


def controllable_aggregation(
    user: Tensor,
    items: Tensor,
    categories: Tensor,
    k: int = 50,
    diversity: float = 0.0,
    exclude: Tensor | None = None,
    candidates_per_interest: int | None = None,
) -> Tensor:
    """ComiRec's controllable aggregation (Cen et al., KDD 2020, Sec. 3.4): greedily build a
    list ``S`` of ``k`` items maximising ``Q(u, S) = sum_i f(u, i) + λ sum_{i, j in S}
    [cat(i) != cat(j)]`` with ``f(u, i) = max_k e_i · u_k``, from the union of each
    interest's top candidates. ``λ = 0`` gives :func:`merge_interest_topk`'s list.

    Args:
        user: ``(B, K, D)`` interests.
        items: ``(N, D)`` item vectors.
        categories: ``(N,)`` int category of each item.
        k: list length.
        diversity: λ >= 0.
        exclude: ``(B, N)`` bool, items never returned (padding, already seen).
        candidates_per_interest: top items each interest contributes (default ``k``).
    Returns:
        ``(B, k)`` item ids in the greedy order.
    """
    if diversity < 0:
        raise InputError(f"diversity (λ) must be >= 0, got {diversity}")
    per = _scores(user, items, exclude)  # (B, K, N)
    n = per.shape[-1]
    if k > n:
        raise InputError(f"k={k} exceeds the {n} items")
    m = min(candidates_per_interest or k, n)
    top_s, top_i = per.topk(m, dim=-1)  # (B, K, m)
    # f(u, i) on the candidate union, -inf elsewhere
    gain = torch.full(
        (per.shape[0], n), float("-inf"), dtype=per.dtype, device=per.device
    )  # (B, N)
    gain = gain.scatter_reduce(1, top_i.flatten(1), top_s.flatten(1), reduce="amax")  # (B, N)
    cats = categories.to(per.device).long()  # (N,)
    n_cat = int(cats.max()) + 1 if cats.numel() else 1
    counts = torch.zeros(per.shape[0], n_cat, dtype=per.dtype, device=per.device)  # (B, C)
    rows = torch.arange(per.shape[0], device=per.device)
    chosen = []
    for step in range(k):
        # adding i gains λ for every already chosen item of another category
        bonus = diversity * (step - counts[:, cats])  # (B, N)
        pick = (gain + bonus).argmax(dim=1)  # (B,)
        chosen.append(pick)
        gain[rows, pick] = float("-inf")
        counts[rows, cats[pick]] += 1
    return torch.stack(chosen, dim=1)


def category_diversity(ids: Tensor, categories: Tensor) -> Tensor:
    """ComiRec's diversity of each list: the share of item pairs of different categories,
    ``(B, k)`` ids -> ``(B,)`` in [0, 1]."""
    cats = categories.to(ids.device)[ids]  # (B, k)
    k = ids.shape[1]
    differ = (cats.unsqueeze(2) != cats.unsqueeze(1)).to(torch.float32)  # (B, k, k)
    return differ.sum(dim=(1, 2)) / max(k * (k - 1), 1)


__all__ = [
    "HistoryContext",
    "MultiInterestEncoder",
    "MultiInterestModel",
    "category_diversity",
    "controllable_aggregation",
    "dynamic_routing",
    "merge_interest_topk",
    "relative_positions",
    "squash",
]
