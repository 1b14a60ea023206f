"""Full-ranking evaluation metrics (vectorised, torch).

Protocol (``docs/protocol.md``): every item is scored for every user, row 0 of the item table
is padding and never ranked, items in the user's history ("seen") are masked, and the rank of
the held-out target decides the metrics.

Definitions, for one user with ``n_relevant`` relevant items and ``hits[r]`` true when the item
at 0-based rank ``r`` is relevant; every metric is averaged over users:

- ``recall@K    = (number of hits in the first K) / n_relevant``
- ``precision@K = (number of hits in the first K) / K``
- ``ndcg@K      = DCG@K / IDCG@K`` with ``DCG@K = sum_{r<K} hits[r] / log2(r + 2)`` and
  ``IDCG@K = sum_{r < min(n_relevant, K)} 1 / log2(r + 2)`` (the best possible DCG@K)
- ``hit@K       = 1`` if any of the first K is a hit, else 0
- ``mrr@K       = 1 / (r + 1)`` for the first hit at rank ``r < K``, else 0

With a single target per user at rank ``r`` these reduce to ``recall = hit = [r < K]``,
``precision = [r < K] / K``, ``ndcg = [r < K] / log2(r + 2)`` and ``mrr = [r < K] / (r + 1)``.

Ties: the rank of the target is the number of (unmasked) items with a **strictly higher** score,
so ties are resolved in the target's favour (optimistic). With continuous learned scores ties
are rare; for count-based scores (MostPop) they are common, and this choice is stated here so
that every model is evaluated the same way. ``ties="pessimistic"`` counts tied items above the
target instead: where the two rules disagree, the scores have collapsed (a peer's GRU4Rec with
identical user vectors scored NDCG@10 0.16 on Toys_and_Games by its ties alone), and the
benchmarks report such a row as no result (``benchmarks/quality.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from rechub_core.errors import InputError
from rechub_core.metric_names import DEFAULT_KS, METRIC_NAMES

__all__ = [
    "DEFAULT_KS",
    "METRIC_NAMES",
    "format_metrics",
    "full_ranking_metrics",
    "most_popular_metrics",
    "ranking_metrics",
    "target_ranks",
    "topk_hits",
]


# --------------------------------------------------------------------------- validation helpers


def _as_tensor(x: Tensor | np.ndarray, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise InputError(
        f"{name}: expected a torch.Tensor (or numpy array), got {type(x).__name__}; "
        "convert it with torch.as_tensor(...)"
    )


def _check_ks(ks: Sequence[int]) -> list[int]:
    if isinstance(ks, int | str) or not isinstance(ks, Sequence):
        raise InputError(
            f"ks: expected a sequence of positive ints such as (10, 20, 50), got {ks!r}"
        )
    out: list[int] = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
            raise InputError(
                f"ks: every cut-off must be a positive int, got {k!r} in {tuple(ks)!r}"
            )
        if int(k) not in out:
            out.append(int(k))
    if not out:
        raise InputError("ks: empty; pass at least one cut-off such as (10, 20, 50)")
    return out


def _check_int_1d(x: Tensor, name: str, length: int | None = None) -> Tensor:
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise InputError(
            f"{name}: expected an integer tensor, got dtype {x.dtype}; cast with .long()"
        )
    if x.dim() != 1:
        raise InputError(f"{name}: expected a 1-d tensor, got shape {tuple(x.shape)}")
    if length is not None and x.shape[0] != length:
        raise InputError(f"{name}: expected length {length}, got {x.shape[0]}")
    return x.long()


def _check_csr(
    seen_indptr: Tensor | np.ndarray, seen_indices: Tensor | np.ndarray, n_users: int, n_rows: int
) -> tuple[Tensor, Tensor]:
    indptr = _check_int_1d(_as_tensor(seen_indptr, "seen_indptr"), "seen_indptr", n_users + 1)
    indices = _check_int_1d(_as_tensor(seen_indices, "seen_indices"), "seen_indices")
    if int(indptr[0]) != 0 or int(indptr[-1]) != indices.shape[0]:
        raise InputError(
            f"seen_indptr: must start at 0 and end at len(seen_indices)={indices.shape[0]}, got "
            f"{int(indptr[0])} .. {int(indptr[-1])}; build it as a CSR row pointer"
        )
    if n_users > 0 and bool((indptr[1:] < indptr[:-1]).any()):
        raise InputError("seen_indptr: must be non-decreasing (a CSR row pointer)")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n_rows):
        raise InputError(
            f"seen_indices: item ids must lie in 0..{n_rows - 1} (rows of the item table), got "
            f"range {int(indices.min())}..{int(indices.max())}"
        )
    return indptr, indices


def _check_targets(targets: Tensor | np.ndarray, n_users: int, n_items: int) -> Tensor:
    """``targets`` as ``(U,)`` int64 item ids, after checking they are ``n_users`` integers in
    ``1..n_items`` (:class:`InputError` naming them otherwise)."""
    t = _check_int_1d(_as_tensor(targets, "targets"), "targets", n_users)
    if int(t.min()) < 1 or int(t.max()) > n_items:
        raise InputError(
            f"targets: item ids must lie in 1..{n_items} (0 is padding), got range "
            f"{int(t.min())}..{int(t.max())}"
        )
    return t


# --------------------------------------------------------------------------- metrics from hits


def topk_hits(topk_items: Tensor, targets: Tensor) -> Tensor:
    """Mark which retrieved items are the user's target.

    Args:
        topk_items: ``(U, K)`` int64 item ids retrieved for each user, best first.
        targets: ``(U,)`` int64 target item id per user.

    Returns:
        ``(U, K)`` bool tensor, ``True`` at rank ``r`` of user ``u`` when
        ``topk_items[u, r] == targets[u]``.
    """
    topk_items = _as_tensor(topk_items, "topk_items")
    targets = _as_tensor(targets, "targets")
    if topk_items.dim() != 2:
        raise InputError(f"topk_items: expected shape (users, K), got {tuple(topk_items.shape)}")
    if topk_items.dtype.is_floating_point or topk_items.dtype == torch.bool:
        raise InputError(f"topk_items: expected integer item ids, got dtype {topk_items.dtype}")
    targets = _check_int_1d(targets, "targets", topk_items.shape[0])
    return topk_items.long() == targets.to(topk_items.device)[:, None]


def ranking_metrics(
    hits: Tensor, n_relevant: Tensor, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Recall, precision, NDCG, hit rate and MRR at each cut-off, averaged over users.

    Args:
        hits: ``(U, Kmax)`` bool, ``hits[u, r]`` true when the item at 0-based rank ``r`` of
            user ``u`` is relevant. ``Kmax`` must be at least ``max(ks)``.
        n_relevant: ``(U,)`` int, number of relevant items of each user (>= 1, and at least
            the number of hits in the row).
        ks: cut-offs K.

    Returns:
        ``{"recall@K", "precision@K", "ndcg@K", "hit@K", "mrr@K"}`` for every K in ``ks``
        (in that order), each a Python float in [0, 1]. See the module docstring for the
        definitions.
    """
    hits = _as_tensor(hits, "hits")
    ks_ = _check_ks(ks)
    if hits.dim() != 2:
        raise InputError(f"hits: expected shape (users, Kmax), got {tuple(hits.shape)}")
    if hits.dtype != torch.bool:
        raise InputError(f"hits: expected a bool tensor, got dtype {hits.dtype}; use hits.bool()")
    n_users, kmax = hits.shape
    if n_users == 0:
        raise InputError("hits: no users (shape (0, K)); metrics are means over users")
    if max(ks_) > kmax:
        raise InputError(
            f"ks: cut-off {max(ks_)} exceeds the {kmax} ranks given in hits; "
            "retrieve at least max(ks) items per user"
        )
    n_rel = _check_int_1d(_as_tensor(n_relevant, "n_relevant"), "n_relevant", n_users)
    n_rel = n_rel.to(hits.device)
    if bool((n_rel < 1).any()):
        raise InputError(
            "n_relevant: every user needs at least one relevant item (got a value < 1)"
        )
    total_hits = hits.sum(dim=1)
    if bool((total_hits > n_rel).any()):
        raise InputError(
            "hits/n_relevant: some user has more hits than relevant items; "
            "n_relevant must count every relevant item of the user"
        )

    h = hits.to(torch.float64)
    ranks = torch.arange(kmax, device=hits.device, dtype=torch.float64)
    discount = 1.0 / torch.log2(ranks + 2.0)  # (Kmax,)
    cum_hits = h.cumsum(dim=1)  # (U, Kmax): hits in the first r+1
    cum_dcg = (h * discount).cumsum(dim=1)  # (U, Kmax)
    cum_discount = discount.cumsum(dim=0)  # (Kmax,): IDCG with r+1 relevant items
    # rank of the first hit (Kmax when there is none)
    first = torch.where(hits.any(dim=1), hits.to(torch.uint8).argmax(dim=1), kmax)
    n_rel_f = n_rel.to(torch.float64)

    # all cut-offs at once: (U, len(ks)) per metric, then one mean over users
    kt = torch.tensor(ks_, device=hits.device, dtype=torch.long)
    n_hit = cum_hits[:, kt - 1]
    idcg = cum_discount[torch.minimum(n_rel[:, None], kt[None, :]) - 1]
    within = first[:, None] < kt[None, :]
    rr = torch.where(within, 1.0 / (first.to(torch.float64) + 1.0)[:, None], 0.0)
    table = torch.stack(
        [
            n_hit / n_rel_f[:, None],  # recall
            n_hit / kt.to(torch.float64),  # precision
            cum_dcg[:, kt - 1] / idcg,  # ndcg
            within.to(torch.float64),  # hit
            rr,  # mrr
        ]
    ).mean(dim=1)  # (5, len(ks))
    values = table.T.tolist()
    return {
        f"{name}@{k}": float(v)
        for k, row in zip(ks_, values, strict=True)
        for name, v in zip(METRIC_NAMES, row, strict=True)
    }


def _single_target_metrics(ranks: Tensor, ks: list[int]) -> dict[str, float]:
    """Metrics of one target per user from its 0-based rank, ``ranks`` ``(U,)`` int64."""
    kmax = max(ks)
    hits = ranks[:, None] == torch.arange(kmax, device=ranks.device)[None, :]
    ones = torch.ones(ranks.shape[0], dtype=torch.long, device=ranks.device)
    return ranking_metrics(hits, ones, ks)


# --------------------------------------------------------------------------- full ranking

#: scores a CPU chunk holds when ``chunk_size`` is None: 2**21 float32 scores (8 MiB) stay in
#: the cache while they are masked and counted; 1.7-2.4x faster than 4,096 users a chunk
#: at 18k-100k items (``benchmarks/results/ranking.md``)
CPU_SCORES_PER_CHUNK = 2**21
#: users a chunk holds on an accelerator when ``chunk_size`` is None (fewer, larger kernels)
DEVICE_USERS_PER_CHUNK = 4096


def default_chunk_size(n_rows: int, device: torch.device) -> int:
    """Users ranked at once for ``n_rows`` item rows (padding included) on ``device``: on the
    CPU as many as fill :data:`CPU_SCORES_PER_CHUNK` scores (at least one), elsewhere
    :data:`DEVICE_USERS_PER_CHUNK`."""
    if device.type != "cpu":
        return DEVICE_USERS_PER_CHUNK
    return max(1, CPU_SCORES_PER_CHUNK // max(n_rows, 1))


def target_ranks(
    user_vectors: Tensor,
    item_vectors: Tensor,
    targets: Tensor,
    seen_indptr: Tensor,
    seen_indices: Tensor,
    chunk_size: int | None = None,
    ties: str = "optimistic",
) -> Tensor:
    """0-based rank of each user's target among all unmasked items (full ranking).

    Arguments as in :func:`full_ranking_metrics`. The rank is the number of items, other than
    padding (row 0) and the user's seen items, whose score is strictly higher than the
    target's score (``ties="optimistic"``, the protocol's rule: ties count in the target's
    favour), or higher or equal (``ties="pessimistic"``: every tied item ranks above it; a
    model whose scores collapse to a few values gets no credit from its ties). A target
    listed among the seen items is still ranked.

    Returns:
        ``(U,)`` int64 ranks on ``user_vectors.device``, each in ``0 .. N-1``.
    """
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0
    ):
        raise InputError(
            f"chunk_size: expected a positive int (users per chunk) or None, got {chunk_size!r}"
        )
    if ties not in ("optimistic", "pessimistic"):
        raise InputError(f"ties: expected 'optimistic' or 'pessimistic', got {ties!r}")
    user_vectors, item_vectors = _checked_vectors(user_vectors, item_vectors)
    n_rows = item_vectors.shape[0]
    n_items = n_rows - 1
    n_users = user_vectors.shape[0]

    device = user_vectors.device
    dtype = torch.promote_types(user_vectors.dtype, item_vectors.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32  # accumulate half-precision embeddings in float32
    users = user_vectors.to(dtype)
    items = item_vectors.to(device=device, dtype=dtype)

    targets = _check_targets(targets, n_users, n_items).to(device)
    indptr, indices = _check_csr(seen_indptr, seen_indices, n_users, n_rows)
    indptr, indices = indptr.to(device), indices.to(device)

    items_t = items.T.contiguous()  # (D, N+1)
    if chunk_size is None:
        chunk_size = default_chunk_size(n_rows, items_t.device)
    ranks = torch.empty(n_users, dtype=torch.long, device=device)
    for start in range(0, n_users, chunk_size):
        stop = min(start + chunk_size, n_users)
        scores = _scores(users[start:stop], items_t)  # (c, N+1)
        c = stop - start
        rows = torch.arange(c, device=device)
        target_score = scores[rows, targets[start:stop]].clone()
        scores[:, 0] = -math.inf
        lo, hi = int(indptr[start]), int(indptr[stop])
        if hi > lo:
            # row of each seen entry (searchsorted: torch.repeat_interleave is slow on CPU)
            entry = torch.arange(lo, hi, device=device)
            seen_rows = torch.searchsorted(indptr[start + 1 : stop + 1], entry, right=True)
            scores[seen_rows, indices[lo:hi]] = -math.inf
        # the target's own column is never strictly higher than itself, so a target that is
        # also "seen" is ranked as usual
        if ties == "pessimistic":
            scores[rows, targets[start:stop]] = -math.inf  # the target does not tie itself
        ranks[start:stop] = _count_above(scores, target_score, ties == "optimistic")
    return ranks


def _count_above(scores: Tensor, target_score: Tensor, strict: bool) -> Tensor:
    """Per row of ``scores (c, N)`` (overwritten), how many exceed (``strict``) or reach its
    ``target_score (c,)``: ``(c,)`` int64. In place and summed as float 0/1 (exact below
    2**24 items), about 1.8x faster on CPU than ``count_nonzero`` over a bool matrix; for
    finite floats ``a - b > 0`` exactly when ``a > b`` (subnormals), and a masked ``-inf``
    never counts."""
    if scores.shape[1] >= 2**24 or not scores.dtype.is_floating_point:
        above = scores > target_score[:, None] if strict else scores >= target_score[:, None]
        return torch.count_nonzero(above, dim=1)
    diff = scores.sub_(target_score[:, None])  # (c, N)
    return (diff.gt_(0) if strict else diff.ge_(0)).sum(dim=1).long()


def _checked_vectors(user_vectors: Tensor, item_vectors: Tensor) -> tuple[Tensor, Tensor]:
    """``user_vectors`` ``(U, D)`` or ``(U, K, D)`` and ``item_vectors`` ``(N + 1, D)`` as
    tensors, after checking shapes, dtypes, sizes and finiteness (:class:`InputError` naming
    the argument otherwise)."""
    user_vectors = _as_tensor(user_vectors, "user_vectors")
    item_vectors = _as_tensor(item_vectors, "item_vectors")
    if user_vectors.dim() not in (2, 3):
        raise InputError(
            "user_vectors: expected shape (users, dim) or multi-interest (users, interests, dim), "
            f"got {tuple(user_vectors.shape)}"
        )
    if item_vectors.dim() != 2:
        raise InputError(
            f"item_vectors: expected shape (n_items + 1, dim) with row 0 = padding, "
            f"got {tuple(item_vectors.shape)}"
        )
    for name, t in (("user_vectors", user_vectors), ("item_vectors", item_vectors)):
        if not t.dtype.is_floating_point:
            raise InputError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    if user_vectors.shape[-1] != item_vectors.shape[1]:
        raise InputError(
            f"user_vectors/item_vectors: embedding dims differ (user dim {user_vectors.shape[-1]}, "
            f"item dim {item_vectors.shape[1]}); both towers must output the same dim"
        )
    if user_vectors.dim() == 3 and user_vectors.shape[1] == 0:
        raise InputError("user_vectors: multi-interest tensor with 0 interests")
    n_rows = item_vectors.shape[0]
    if n_rows - 1 < 1:
        raise InputError(
            f"item_vectors: need row 0 (padding) plus at least one item, got {n_rows} rows"
        )
    if user_vectors.shape[0] == 0:
        raise InputError("user_vectors: no users; metrics are means over users")
    if not bool(torch.isfinite(user_vectors).all()):
        raise InputError("user_vectors: contains NaN or infinite values; check the user tower")
    # row 0 (padding) is never ranked, so its values do not matter
    if not bool(torch.isfinite(item_vectors[1:]).all()):
        raise InputError("item_vectors: contains NaN or infinite values; check the item tower")
    return user_vectors, item_vectors


def _scores(u: Tensor, items_t: Tensor) -> Tensor:
    """``(c, N + 1)`` scores of users ``u`` ``(c, D)`` against ``items_t`` ``(D, N + 1)``; for
    multi-interest ``u`` ``(c, K, D)`` the best interest's score (a running max over interests
    keeps memory at ``(c, N + 1)``)."""
    if u.dim() == 2:
        return u @ items_t
    scores = u[:, 0] @ items_t
    for i in range(1, u.shape[1]):
        torch.maximum(scores, u[:, i] @ items_t, out=scores)
    return scores


def full_ranking_metrics(
    user_vectors: Tensor,
    item_vectors: Tensor,
    targets: Tensor,
    seen_indptr: Tensor,
    seen_indices: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
    ties: str = "optimistic",
) -> dict[str, float]:
    """Full-ranking metrics of one held-out target per user, scored by dot product.

    Args:
        user_vectors: ``(U, D)`` float user embeddings, or multi-interest ``(U, I, D)``; with
            several interests the score of an item is the max over the interests.
        item_vectors: ``(N + 1, D)`` float item embeddings; row 0 is padding and never ranked.
        targets: ``(U,)`` int64 target item id of each user, in ``1..N``.
        seen_indptr: ``(U + 1,)`` int64 CSR row pointer of the items excluded per user.
        seen_indices: ``(nnz,)`` int64 item ids in ``0..N``; user ``u`` excludes
            ``seen_indices[seen_indptr[u]:seen_indptr[u + 1]]``. The target itself is never
            excluded, even when listed.
        ks: cut-offs K.
        chunk_size: users scored at once; peak extra memory is about
            ``chunk_size * (N + 1)`` scores. None: :func:`default_chunk_size` (on the CPU
            about 2**21 scores, which stay in the cache; the result does not depend on it).
        ties: "optimistic" (the protocol) or "pessimistic"; see :func:`target_ranks`.

    Returns:
        ``{"recall@K", "precision@K", "ndcg@K", "hit@K", "mrr@K"}`` for every K, Python floats
        averaged over users. The target's rank is the number of unmasked items with a strictly
        higher score (ties favour the target; see the module docstring).
    """
    ks_ = _check_ks(ks)
    ranks = target_ranks(
        user_vectors, item_vectors, targets, seen_indptr, seen_indices, chunk_size, ties
    )
    return _single_target_metrics(ranks, ks_)


def most_popular_metrics(
    item_counts: Tensor | np.ndarray,
    targets: Tensor | np.ndarray,
    seen_indptr: Tensor | np.ndarray,
    seen_indices: Tensor | np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Full-ranking metrics of the MostPop baseline: every user scores items by training count.

    Args:
        item_counts: ``(N + 1,)`` number of training interactions per item (index 0 = padding,
            ignored); any non-negative numbers (ints or floats).
        targets, seen_indptr, seen_indices, ks: as in :func:`full_ranking_metrics`.

    Returns:
        The same dictionary as :func:`full_ranking_metrics`. Items tied with the target's count
        do not push it down (ties favour the target).
    """
    counts = _as_tensor(item_counts, "item_counts")
    if counts.dim() != 1:
        raise InputError(
            f"item_counts: expected shape (n_items + 1,) with index 0 = padding, "
            f"got {tuple(counts.shape)}"
        )
    if counts.dtype == torch.bool or counts.dtype.is_complex:
        raise InputError(f"item_counts: expected numeric counts, got dtype {counts.dtype}")
    targets_t = _as_tensor(targets, "targets")
    if targets_t.dim() != 1:
        raise InputError(f"targets: expected a 1-d tensor, got shape {tuple(targets_t.shape)}")
    counts = counts.to(torch.float64)  # exact for counts up to 2**53
    if not bool(torch.isfinite(counts[1:]).all()):
        raise InputError("item_counts: contains NaN or infinite values")
    ks_ = _check_ks(ks)
    n_rows, n_users = counts.shape[0], targets_t.shape[0]
    if n_rows < 2:
        raise InputError(f"item_counts: need index 0 (padding) plus one item, got {n_rows}")
    if n_users == 0:
        raise InputError("targets: no users; metrics are means over users")
    targets_t = _check_targets(targets_t, n_users, n_rows - 1)
    indptr, indices = _check_csr(seen_indptr, seen_indices, n_users, n_rows)
    # the full ranking of one score per item without a (users x items) matrix: the items above
    # a target are those of the catalogue counted higher, less the user's distinct seen ones
    target_count = counts[targets_t]  # (U,)
    by_count = counts[1:].sort().values  # (N,)
    above = by_count.numel() - torch.searchsorted(by_count, target_count, right=True)  # (U,)
    rows = torch.searchsorted(indptr[1:], torch.arange(indices.numel()), right=True)  # (nnz,)
    keep = indices > 0
    pairs = torch.unique(rows[keep] * n_rows + indices[keep])  # distinct (user, item)
    seen_user, seen_item = pairs // n_rows, pairs % n_rows
    seen_above = counts[seen_item] > target_count[seen_user]  # (distinct nnz,)
    ranks = above - torch.bincount(seen_user[seen_above], minlength=n_users)
    return _single_target_metrics(ranks, ks_)


# --------------------------------------------------------------------------- formatting


def format_metrics(metrics: dict[str, float]) -> str:
    """Render metrics as one short line per cut-off.

    Example::

        @10  recall 0.1234  precision 0.0123  ndcg 0.0612  hit 0.1234  mrr 0.0432
        @20  recall ...

    Keys without an ``@K`` suffix go on a last line. Values are printed with 4 decimals.
    """
    by_k: dict[str, list[tuple[str, float]]] = {}
    other: list[tuple[str, float]] = []
    for key, value in metrics.items():
        name, sep, k = key.rpartition("@")
        if sep and name:
            by_k.setdefault(k, []).append((name, value))
        else:
            other.append((key, value))

    def sort_key(k: str) -> tuple[int, int | str]:
        return (0, int(k)) if k.isdigit() else (1, k)

    width = max((len(k) for k in by_k), default=0) + 1
    lines = [
        f"{'@' + k:<{width}}  " + "  ".join(f"{n} {v:.4f}" for n, v in by_k[k])
        for k in sorted(by_k, key=sort_key)
    ]
    if other:
        lines.append("  ".join(f"{n} {v:.4f}" for n, v in other))
    return "\n".join(lines)
