"""A seeded generator of interactions with planted structure, for demos and fast tests.

Users have 1-3 interest clusters and walk item-to-item transitions inside a cluster, with a
popularity skew, so that sequential and multi-interest models can beat popularity measurably
(DESIGN.md section 4; ``rechub demo`` trains on it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from rechub_core.datasets import Interactions
from rechub_core.errors import InputError

__all__ = ["synthetic_interactions"]

_N_SUCCESSORS = 3  # likely successors per item
_ZIPF_A = 1.0  # popularity skew inside a cluster


def synthetic_interactions(
    n_users: int = 1000,
    n_items: int = 500,
    n_clusters: int = 10,
    min_len: int = 8,
    max_len: int = 40,
    seed: int = 0,
    p_switch: float = 0.1,
    p_follow: float = 0.7,
) -> Interactions:
    """Seeded interactions with planted structure, for demos and fast tests.

    Items are split into ``n_clusters`` clusters (item ``"category"`` = ``"c<k>"``) with a
    Zipf-like popularity inside each cluster; every item has 3 likely successors in its cluster
    (drawn by that popularity).
    Each user has 1–3 interest clusters and a sequence of ``min_len..max_len`` distinct items:
    a walk that mostly follows the current item's successors, sometimes jumps to a popular item
    of the current cluster, and occasionally switches among the user's clusters. Timestamps
    (unix seconds) increase strictly per user. Users table: ``"segment"`` (``"s<k>"``), equal to
    the user's first cluster 80% of the time. Ids are ints ``1..n``.

    ``p_switch`` is the chance per step of re-drawing the current cluster among the user's
    clusters and ``p_follow`` the chance of following a successor; ``p_switch=1, p_follow=0``
    plants pure multi-interest users (every item from a random one of their clusters, no order).
    """
    for name, p in (("p_switch", p_switch), ("p_follow", p_follow)):
        if not 0.0 <= p <= 1.0:
            raise InputError(f"synthetic_interactions {name} must be in [0, 1], got {p}")
    if n_clusters < 1 or n_items < n_clusters or n_users < 1:
        raise InputError(
            f"synthetic_interactions needs n_users >= 1 and n_items >= n_clusters >= 1, got "
            f"n_users={n_users}, n_items={n_items}, n_clusters={n_clusters}"
        )
    if not 1 <= min_len <= max_len:
        raise InputError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    rng = np.random.default_rng(seed)
    cluster_of, popular = _item_clusters(rng, n_items, n_clusters)
    # Successors: drawn by popularity within the item's own cluster.
    successors = popular(np.repeat(cluster_of, _N_SUCCESSORS)).reshape(n_items, _N_SUCCESSORS)
    n_int = rng.integers(1, min(3, n_clusters) + 1, size=n_users)  # 1-3 interest clusters
    interests = np.argsort(rng.random((n_users, n_clusters)), axis=1)[:, :3]
    lengths = rng.integers(min_len, max_len + 1, size=n_users)
    walk = _walks(
        rng, popular, cluster_of, successors, n_int, interests, 3 * max_len, p_switch, p_follow
    )
    flat_user, flat_item, rank = _first_distinct(walk, lengths)
    timestamps = _timestamps(rng, flat_user, rank, n_users)
    return _tables(rng, flat_user, flat_item, timestamps, interests, cluster_of, n_clusters, seed)


def _item_clusters(
    rng: np.random.Generator, n_items: int, n_clusters: int
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Each item's cluster ``(n_items,)``, and ``popular(clusters)``: one popularity-weighted
    (Zipf within the cluster) item of each given cluster."""
    # Items, grouped by cluster: sorted_items[cptr[c]:cptr[c+1]] are cluster c's, head first.
    cluster_of = rng.permutation(np.arange(n_items) % n_clusters)
    sorted_items = np.argsort(cluster_of, kind="stable")
    cptr = np.zeros(n_clusters + 1, dtype=np.int64)
    np.cumsum(np.bincount(cluster_of, minlength=n_clusters), out=cptr[1:])
    csize = np.diff(cptr)
    rank_in_cluster = np.arange(n_items) - np.repeat(cptr[:-1], csize)
    weight = 1.0 / (rank_in_cluster + 1.0) ** _ZIPF_A
    # Cumulative weights, normalised per cluster and shifted by the cluster index, so one
    # searchsorted draws a popularity-weighted item of cluster c from u in [c, c+1).
    cum = np.cumsum(weight)
    base = np.concatenate([[0.0], cum[cptr[1:-1] - 1]])
    cdf = (cum - np.repeat(base, csize)) / np.repeat(cum[cptr[1:] - 1] - base, csize)
    cdf += np.repeat(np.arange(n_clusters), csize)

    def popular(clusters: np.ndarray) -> np.ndarray:
        u = clusters + rng.random(len(clusters)) * (1 - 1e-12)
        pos = np.minimum(np.searchsorted(cdf, u, side="right"), cptr[clusters + 1] - 1)
        return sorted_items[pos]

    return cluster_of, popular


def _walks(
    rng: np.random.Generator,
    popular: Callable[[np.ndarray], np.ndarray],
    cluster_of: np.ndarray,
    successors: np.ndarray,
    n_int: np.ndarray,
    interests: np.ndarray,
    steps: int,
    p_switch: float,
    p_follow: float,
) -> np.ndarray:
    """Every user's walk ``(n_users, steps)`` of 0-based item ids (repeats allowed)."""
    n_users = len(n_int)
    walk = np.empty((n_users, steps), dtype=np.int64)
    rows = np.arange(n_users)
    cur_k = np.zeros(n_users, dtype=np.int64)
    cur = popular(interests[:, 0])
    walk[:, 0] = cur
    for t in range(1, steps):
        switch = rng.random(n_users) < p_switch
        cur_k = np.where(switch, rng.integers(0, 3, size=n_users) % n_int, cur_k)
        cluster = interests[rows, cur_k]
        follow = (rng.random(n_users) < p_follow) & (cluster_of[cur] == cluster)
        nxt = successors[cur, rng.integers(0, _N_SUCCESSORS, size=n_users)]
        cur = np.where(follow, nxt, popular(cluster))
        walk[:, t] = cur

    return walk


def _first_distinct(
    walk: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, rank) of each user's first ``lengths[u]`` distinct items, in walk order."""
    n_users, steps = walk.shape
    rows = np.arange(n_users)
    flat_user = np.repeat(rows, steps)
    flat_item = walk.reshape(-1)
    first = ~pd.DataFrame({"u": flat_user, "i": flat_item}).duplicated().to_numpy()
    flat_user, flat_item = flat_user[first], flat_item[first]
    uptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(flat_user, minlength=n_users), out=uptr[1:])
    rank = np.arange(len(flat_user)) - uptr[flat_user]
    sel = rank < lengths[flat_user]
    flat_user, flat_item, rank = flat_user[sel], flat_item[sel], rank[sel]
    return flat_user, flat_item, rank


def _timestamps(
    rng: np.random.Generator, flat_user: np.ndarray, rank: np.ndarray, n_users: int
) -> np.ndarray:
    """Unix seconds, strictly increasing per user (rows grouped by user, in rank order)."""
    start = 978_300_000 + rng.integers(0, 30 * 86_400, size=n_users)
    gaps = rng.integers(1, 3_600, size=len(flat_user))
    # Cumulative gaps per user: global cumsum minus the cumsum before each user's first event.
    csum = np.cumsum(gaps)
    first_pos = np.flatnonzero(rank == 0)
    before = np.repeat(csum[first_pos] - gaps[first_pos], np.diff(np.append(first_pos, len(csum))))
    timestamps = start[flat_user] + csum - before
    return timestamps


def _tables(
    rng: np.random.Generator,
    flat_user: np.ndarray,
    flat_item: np.ndarray,
    timestamps: np.ndarray,
    interests: np.ndarray,
    cluster_of: np.ndarray,
    n_clusters: int,
    seed: int,
) -> Interactions:
    """The events, users (segment) and items (title, category) tables, 1-based ids."""
    n_users, n_items = len(interests), len(cluster_of)
    events = pd.DataFrame(
        {"user_id": flat_user + 1, "item_id": flat_item + 1, "timestamp": timestamps}
    )
    segment_cluster = np.where(
        rng.random(n_users) < 0.8, interests[:, 0], rng.integers(0, n_clusters, size=n_users)
    )
    users = pd.DataFrame(
        {"segment": np.char.add("s", segment_cluster.astype(str)).astype(object)},
        index=pd.Index(np.arange(1, n_users + 1), name="user_id"),
    )
    ids = np.arange(1, n_items + 1)
    items = pd.DataFrame(
        {
            "title": np.char.add("item ", ids.astype(str)).astype(object),
            "category": np.char.add("c", cluster_of.astype(str)).astype(object),
        },
        index=pd.Index(ids, name="item_id"),
    )
    return Interactions(events=events, users=users, items=items, name=f"synthetic-{seed}")
