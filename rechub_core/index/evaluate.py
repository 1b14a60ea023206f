"""Test metrics of a run computed through its item index (``rechub evaluate RUN
--through-index``): what the serving path retrieves, next to the exact full ranking of the
protocol. With an approximate index (HNSW, IVF, Annoy) the difference is the metric cost of
the approximation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rechub_core.metrics import DEFAULT_KS, ranking_metrics, topk_hits

__all__ = ["index_metrics"]


def index_metrics(
    loaded: Any, ks: Sequence[int] = DEFAULT_KS, batch_size: int = 1024
) -> dict[str, float]:
    """Recall/Precision/NDCG/Hit/MRR@K of every user's test target, the top ``max(ks)`` items
    retrieved through the run's index with the user's seen items excluded.

    Args:
        loaded: a :class:`rechub_core.runs.LoadedRun`.
        ks: cut-offs.
        batch_size: users encoded and searched at once.
    """
    from rechub_core.runs import load_run_index

    index = load_run_index(loaded.path, loaded.config)
    users = loaded.users
    inputs = users["inputs"]
    indptr = users["seen_indptr"].numpy()
    indices = users["seen_indices"].numpy()
    kmax = max(ks)
    n = int(users["target"].shape[0])
    found = np.empty((n, kmax), dtype=np.int64)  # (U, Kmax) encoded ids, -1 padding
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            rows = slice(lo, min(lo + batch_size, n))
            vectors = loaded.model.encode_user({k: v[rows] for k, v in inputs.items()})
            exclude = [indices[indptr[r] : indptr[r + 1]] for r in range(rows.start, rows.stop)]
            ids, _ = index.search(vectors.numpy().astype(np.float32), kmax, exclude=exclude)
            found[rows] = ids
    hits = topk_hits(torch.from_numpy(found), users["target"])
    return ranking_metrics(hits, torch.ones(n, dtype=torch.long), ks)
