"""Exact maximum inner product search with numpy: the reference index used for evaluation."""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from rechub_core.errors import CheckpointError
from rechub_core.index.base import Index, PathLike

__all__ = ["ExactIndex"]

_SCORE_BUDGET = 1 << 24  # float32 scores materialised at once (64 MiB)


class ExactIndex(Index):
    """Exact maximum inner product search with numpy (brute force over all N items).

    Memory: the vectors plus about 64 MiB of scores per query batch. Ties are broken by
    build order.
    """

    saved_kind: ClassVar[str] = "exact"

    def __init__(self) -> None:
        super().__init__()
        self._vectors: np.ndarray | None = None  # (N, D) float32

    def _build_backend(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._vectors = vectors.copy()

    def _stream_start(self, dim: int, n_total: int | None) -> Any:
        return {"buf": np.empty((n_total or 0, dim), dtype=np.float32), "filled": 0}

    def _stream_add(self, state: Any, vectors: np.ndarray) -> None:
        buf, filled = state["buf"], state["filled"]
        end = filled + vectors.shape[0]
        if end > buf.shape[0]:  # more than n_total: grow geometrically
            grown = np.empty((max(end, 2 * buf.shape[0]), buf.shape[1]), dtype=np.float32)
            grown[:filled] = buf[:filled]
            state["buf"] = buf = grown
        buf[filled:end] = vectors
        state["filled"] = end

    def _stream_finish(self, state: Any, ids: np.ndarray) -> None:
        buf, filled = state["buf"], state["filled"]
        self._vectors = buf if filled == buf.shape[0] else buf[:filled].copy()

    def _raw_search(
        self, q: np.ndarray, fetch: int, effort: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self._vectors is not None
        vectors = self._vectors
        n = vectors.shape[0]
        fetch = min(fetch, n)
        m = q.shape[0]
        pos = np.empty((m, fetch), dtype=np.int64)
        out = np.empty((m, fetch), dtype=np.float32)
        step = max(1, _SCORE_BUDGET // n)
        for start in range(0, m, step):
            s = q[start : start + step] @ vectors.T  # (c, N)
            if fetch < n:
                cand = np.argpartition(-s, fetch - 1, axis=1)[:, :fetch]
            else:
                cand = np.broadcast_to(np.arange(n), s.shape)
            cand_s = np.take_along_axis(s, cand, axis=1)
            order = np.lexsort((cand, -cand_s), axis=-1)  # score desc, then build order
            pos[start : start + step] = np.take_along_axis(cand, order, axis=1)
            out[start : start + step] = np.take_along_axis(cand_s, order, axis=1)
        return pos, out

    def _payload(self) -> dict[str, np.ndarray]:
        assert self._vectors is not None
        return {"vectors": self._vectors}

    @classmethod
    def _from_payload(cls, payload: dict[str, np.ndarray], path: PathLike) -> Self:
        if "vectors" not in payload:
            raise CheckpointError(f"index file {str(path)!r} lacks the item vectors; save it again")
        index = cls()
        vectors = np.ascontiguousarray(payload["vectors"], dtype=np.float32)
        ids = payload["ids"].astype(np.int64)
        if vectors.ndim != 2 or vectors.shape[0] != ids.shape[0]:
            raise CheckpointError(
                f"index file {str(path)!r}: vectors {vectors.shape} do not match ids {ids.shape}"
            )
        index._vectors = vectors
        index._set_ids(ids)
        index._dim = int(vectors.shape[1])
        return index
