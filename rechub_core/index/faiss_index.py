"""faiss inner-product indexes: ``FaissIndex(kind="flat" | "hnsw" | "ivf")``.

``IndexFlatIP`` / ``IndexHNSWFlat`` / ``IndexIVFFlat`` with ``METRIC_INNER_PRODUCT``.
Large catalogues: ``build_from_batches`` adds each batch to the index as it comes, so the full
``(N, D)`` matrix never exists besides the index itself; ``FaissIndex(shards=S)`` splits the
catalogue into S sub-indexes searched in parallel (``faiss.IndexShards``), saved one after
another (faiss indexes are streamed into and out of the file, without a serialised copy).
"""

from __future__ import annotations

import json
import math
import zipfile
from typing import Any, ClassVar, Self

import faiss
import numpy as np

from rechub_core.errors import CheckpointError, InputError
from rechub_core.index.base import Index, PathLike
from rechub_core.index.storage import SHARD_PREFIX, NpzEntry, StreamEntry

__all__ = ["FaissIndex"]

_FAISS_KINDS = ("flat", "hnsw", "ivf")
_faiss_io: Any = faiss  # faiss's type stubs lack its callback readers and writers


def _faiss_entry(index: Any) -> StreamEntry:
    """A faiss index as a file entry, streamed straight into the file: saving holds no
    serialised copy (``faiss.write_index`` runs twice, first only to count the bytes)."""
    size = 0

    def count(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)

    faiss.write_index(index, _faiss_io.PyCallbackIOWriter(count))
    return StreamEntry(
        size, lambda f: faiss.write_index(index, _faiss_io.PyCallbackIOWriter(f.write))
    )


def _read_faiss(entry: NpzEntry) -> Any:
    """A faiss index streamed from its file entry (loading holds no serialised copy either)."""
    with entry.open() as f:
        return faiss.read_index(_faiss_io.PyCallbackIOReader(f.read))


class _FaissBuild:
    """State of a streamed faiss build: sub-indexes filled in position order, an IVF training
    sample buffered until it is large enough."""

    def __init__(self, dim: int, n_total: int | None, n_shards: int) -> None:
        self.dim = dim
        self.n_total = n_total
        self.n_shards = n_shards
        # shard s holds positions [s * chunk, (s + 1) * chunk); the last one takes any excess
        self.chunk = -(-n_total // n_shards) if n_total else 0
        self.subs: list[Any] = []
        self.position = 0  # rows added so far
        self.pending: list[np.ndarray] = []  # IVF: rows waiting for the trained quantizer
        self.n_pending = 0
        self.template: Any = None  # IVF: trained, empty index cloned for every shard


class FaissIndex(Index):
    """faiss inner-product index: ``kind="flat"`` (exact), ``"hnsw"`` or ``"ivf"``.

    Args:
        kind: ``"flat"`` (``IndexFlatIP``), ``"hnsw"`` (``IndexHNSWFlat``) or ``"ivf"``
            (``IndexIVFFlat``), all with the inner-product metric.
        metric: only ``"ip"`` (inner product) is supported.
        hnsw_m: HNSW graph degree M.
        ef_search: HNSW candidate list size at search time (raised to k when smaller).
        nlist: IVF number of lists (per shard); default ``round(4 * sqrt(n))`` for a shard of n
            items, lowered to ``n // 39`` so that each list gets the 39 training points faiss
            asks for (explicit values are only capped at n).
        nprobe: IVF lists visited per query (at most nlist).
        shards: split the catalogue into this many sub-indexes of contiguous items, wrapped in
            ``faiss.IndexShards`` (searched in parallel threads, results merged); for
            catalogues that do not fit one index. IVF shards share one trained quantizer.

    The faiss index stores build positions ``0..N-1`` as its labels (shards number theirs
    successively); item ids are mapped back in Python, so any non-negative int64 ids work.
    """

    saved_kind: ClassVar[str] = "faiss"
    #: IVF: at most this many vectors (and at least 39 per list) train the quantizer
    ivf_train_size: ClassVar[int] = 100_000

    def __init__(
        self,
        kind: str = "flat",
        metric: str = "ip",
        hnsw_m: int = 32,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = 16,
        shards: int = 1,
    ) -> None:
        super().__init__()
        if kind not in _FAISS_KINDS:
            raise InputError(f"kind: expected one of {_FAISS_KINDS}, got {kind!r}")
        if metric != "ip":
            raise InputError(
                f"metric: only 'ip' (inner product) is supported, got {metric!r}; normalise "
                "the vectors for cosine similarity"
            )
        for name, value in (
            ("hnsw_m", hnsw_m),
            ("ef_search", ef_search),
            ("nprobe", nprobe),
            ("shards", shards),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"{name}: expected a positive int, got {value!r}")
        if nlist is not None and (
            isinstance(nlist, bool) or not isinstance(nlist, int) or nlist <= 0
        ):
            raise InputError(f"nlist: expected a positive int or None, got {nlist!r}")
        self.kind = kind
        self.metric = metric
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.shards = shards
        self._index: Any = None
        self._subs: list[Any] = []  # the sub-indexes (one when not sharded); own the C++ objects
        self._nlist_used: int | None = None

    # -- building

    def _nlist_for(self, n: int) -> int:
        if self.nlist is not None:
            return max(1, min(self.nlist, n))
        # ~4 sqrt(n), but keep >= 39 training points per list (faiss's minimum)
        return max(1, min(round(4 * math.sqrt(n)), n // 39))

    def _new_sub(self, state: _FaissBuild) -> Any:
        if self.kind == "flat":
            return faiss.IndexFlatIP(state.dim)
        if self.kind == "hnsw":
            return faiss.IndexHNSWFlat(state.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        return faiss.clone_index(state.template)

    def _train_ivf(self, state: _FaissBuild, shard_size: int) -> None:
        sample = np.concatenate(state.pending) if len(state.pending) > 1 else state.pending[0]
        nlist = min(self._nlist_for(shard_size), sample.shape[0])
        quantizer = faiss.IndexFlatIP(state.dim)
        template = faiss.IndexIVFFlat(quantizer, state.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        template.train(sample)  # faiss's Python wrapper keeps the quantizer alive with it
        state.template = template
        self._nlist_used = nlist

    def _stream_start(self, dim: int, n_total: int | None) -> _FaissBuild:
        if self.shards > 1 and not n_total:
            raise InputError(
                f"a faiss index of {self.shards} shards splits the catalogue into contiguous "
                "parts: pass n_total (the number of items) to build_from_batches"
            )
        return _FaissBuild(dim, n_total, self.shards)

    def _train_target(self, state: _FaissBuild) -> int:
        if not state.n_total:
            return -1  # unknown size: train when the stream ends
        shard_size = -(-state.n_total // self.shards)
        return min(state.n_total, max(39 * self._nlist_for(shard_size), self.ivf_train_size))

    def _stream_add(self, state: _FaissBuild, vectors: np.ndarray) -> None:
        if self.kind == "ivf" and state.template is None:
            state.pending.append(vectors)
            state.n_pending += vectors.shape[0]
            target = self._train_target(state)
            if 0 < target <= state.n_pending:
                assert state.n_total
                self._train_ivf(state, -(-state.n_total // self.shards))
                self._flush_pending(state)
            return
        self._route(state, vectors)

    def _flush_pending(self, state: _FaissBuild) -> None:
        pending, state.pending, state.n_pending = state.pending, [], 0
        for block in pending:
            self._route(state, block)

    def _route(self, state: _FaissBuild, vectors: np.ndarray) -> None:
        """Add rows at positions ``state.position ..`` to the shards that own them."""
        lo = 0
        while lo < vectors.shape[0]:
            pos = state.position
            if self.shards == 1 or not state.chunk:
                shard, room = 0, vectors.shape[0] - lo
            else:
                shard = min(pos // state.chunk, self.shards - 1)
                room = (
                    vectors.shape[0] - lo
                    if shard == self.shards - 1
                    else (shard + 1) * state.chunk - pos
                )
            while len(state.subs) <= shard:
                state.subs.append(self._new_sub(state))
            take = min(room, vectors.shape[0] - lo)
            state.subs[shard].add(np.ascontiguousarray(vectors[lo : lo + take]))
            lo += take
            state.position += take

    def _stream_finish(self, state: _FaissBuild, ids: np.ndarray) -> None:
        if self.kind == "ivf" and state.template is None:  # fewer rows than the sample size
            self._train_ivf(state, -(-state.n_pending // self.shards))
            self._flush_pending(state)
        self._install(state.subs)

    def _install(self, subs: list[Any]) -> None:
        """Use ``subs`` (labels = positions, numbered successively) as the index."""
        self._subs = subs
        if len(subs) == 1:
            self._index = subs[0]
        else:
            # threaded, successive ids: shard i's labels follow on from shard i - 1's
            shards = faiss.IndexShards(subs[0].d, True, True)  # type: ignore[call-arg]
            for sub in subs:
                shards.add_shard(sub)
            self._index = shards
        self._apply_search_params()

    def _build_backend(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        state = self._stream_start(vectors.shape[1], vectors.shape[0])
        self._stream_add(state, vectors)
        self._stream_finish(state, ids)

    # -- search

    def _apply_search_params(self) -> None:
        for sub in self._subs:
            # the downcast wrapper does not own the C++ object: self._subs keeps the owners
            index: Any = faiss.downcast_index(sub)
            if self.kind == "hnsw":
                index.hnsw.efSearch = self.ef_search
            elif self.kind == "ivf":
                index.nprobe = min(self.nprobe, index.nlist)
                self._nlist_used = int(index.nlist)

    def _max_effort(self) -> int:
        if self.kind == "ivf" and self._nlist_used is not None:
            nprobe = min(self.nprobe, self._nlist_used)
            return max(1, math.ceil(self._nlist_used / nprobe))
        return 1

    def _raw_search(
        self, q: np.ndarray, fetch: int, effort: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        fetch = min(fetch, len(self))
        params: Any = None
        if self.kind == "hnsw" and fetch > self.ef_search:
            params = faiss.SearchParametersHNSW(efSearch=fetch)  # type: ignore[attr-defined]
        elif self.kind == "ivf" and effort > 1 and self._nlist_used is not None:
            nprobe = min(self._nlist_used, self.nprobe * effort)
            params = faiss.SearchParametersIVF(nprobe=nprobe)  # type: ignore[call-arg]
        if params is None:
            scores, pos = self._index.search(q, fetch)
        else:
            scores, pos = self._index.search(q, fetch, params=params)
        return pos.astype(np.int64, copy=False), scores

    # -- persistence

    def _config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "hnsw_m": self.hnsw_m,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "shards": self.shards,
        }

    def _payload(self) -> dict[str, Any]:
        if len(self._subs) == 1:
            return {"faiss_index": _faiss_entry(self._subs[0])}
        # faiss cannot serialise IndexShards: one entry per shard
        return {f"{SHARD_PREFIX}{i}": _faiss_entry(sub) for i, sub in enumerate(self._subs)}

    @classmethod
    def _from_payload(cls, payload: dict[str, Any], path: PathLike) -> Self:
        try:
            config = json.loads(str(payload["config"]))
            index = cls(**config)
        except (ValueError, TypeError, InputError) as exc:
            raise CheckpointError(
                f"index file {str(path)!r} has an unusable configuration ({exc})"
            ) from exc
        keys = ["faiss_index"] if "faiss_index" in payload else []
        n_shards = sum(1 for k in payload if k.startswith(SHARD_PREFIX))
        keys += [f"{SHARD_PREFIX}{i}" for i in range(n_shards)]
        if not keys or any(k not in payload for k in keys):
            raise CheckpointError(f"index file {str(path)!r} lacks the faiss index; save it again")
        subs = []
        for key in keys:
            entry = payload[key]
            try:
                if isinstance(entry, NpzEntry):
                    subs.append(_read_faiss(entry))
                else:
                    subs.append(faiss.deserialize_index(np.ascontiguousarray(entry, np.uint8)))
            except (RuntimeError, ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise CheckpointError(
                    f"index file {str(path)!r}: the faiss index cannot be read ({exc})"
                ) from exc
        ids = payload["ids"].astype(np.int64)
        total = sum(int(s.ntotal) for s in subs)
        if total != ids.shape[0]:
            raise CheckpointError(
                f"index file {str(path)!r}: faiss holds {total} vectors but {ids.shape[0]} ids"
            )
        index._install(subs)
        index._set_ids(ids)
        index._dim = int(subs[0].d)
        return index
