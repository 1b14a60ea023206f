"""Item indexes for retrieval: exact inner product and faiss (flat, HNSW, IVF).

An index holds item vectors ``(N, D)`` float32 under arbitrary non-negative int64 item ids and
answers top-k maximum-inner-product queries (score = dot product, higher is better):

- ``ExactIndex``: brute force with numpy matmul; the reference used for evaluation.
- ``FaissIndex(kind="flat" | "hnsw" | "ivf")``: faiss ``IndexFlatIP`` / ``IndexHNSWFlat`` /
  ``IndexIVFFlat`` with ``METRIC_INNER_PRODUCT``.

Every index supports per-query exclusion of ids (the user's seen items) and multi-interest
queries ``(B, I, D)``: each interest is searched, and the candidates are merged keeping the
best score of each item, without duplicates (DESIGN.md §4–5). Exclusion works by over-fetching
``k + (number of excluded ids in the index)`` candidates per interest and filtering; this is
exact for exact/flat search. Rows that still come back short (approximate indexes) are
searched again with a doubled fetch, up to the whole index.

``save`` writes one ``.npz`` file atomically (temp file in the same folder, then
``os.replace``) holding the kind, the configuration, the ids and either the vectors (exact) or
the serialized faiss index; :func:`load_index` reads either kind back.

Large catalogues: ``build_from_batches`` takes the item vectors batch by batch (as a model
encodes them) and adds each batch to the index, so the full ``(N, D)`` matrix never exists
besides the index itself; ``FaissIndex(shards=S)`` splits the catalogue into S sub-indexes
searched in parallel (``faiss.IndexShards``), saved one after another and loaded by the same
:func:`load_index`.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol, Self, runtime_checkable

import faiss
import numpy as np

from rechub_core.errors import CheckpointError, InputError
from rechub_core.io import atomic_path

__all__ = ["ExactIndex", "FaissIndex", "ItemIndex", "load_index"]

_FORMAT = "rechub-item-index"
_VERSION = 1
_FAISS_KINDS = ("flat", "hnsw", "ivf")
_SCORE_BUDGET = 1 << 24  # float32 scores materialised at once by ExactIndex (64 MiB)

PathLike = str | os.PathLike[str]


@runtime_checkable
class ItemIndex(Protocol):
    """What the serving path needs from an item index."""

    def build(self, item_vectors: np.ndarray, item_ids: np.ndarray) -> None:
        """Index ``item_vectors`` ``(N, D)`` float32 under ``item_ids`` ``(N,)`` int64."""
        ...

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ids ``(B, k)`` int64 and scores ``(B, k)`` float32 for ``(B, D)`` or
        ``(B, I, D)`` queries, best first, padded with ``-1`` / ``-inf``."""
        ...

    def save(self, path: PathLike) -> None:
        """Write the index to one file, atomically."""
        ...

    @classmethod
    def load(cls, path: PathLike) -> ItemIndex:
        """Read an index written by :meth:`save`."""
        ...


# --------------------------------------------------------------------------- helpers


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        return np.asarray(x.detach().cpu().numpy())
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise InputError(f"{name}: cannot convert {type(x).__name__} to a numpy array") from exc


def _float_matrix(x: Any, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim not in ndims:
        shapes = " or ".join({2: "(n, dim)", 3: "(n, interests, dim)"}[d] for d in ndims)
        raise InputError(f"{name}: expected shape {shapes}, got {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name}: expected float32 values, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{name}: expected real float32 values, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).any(axis=tuple(range(1, arr.ndim))).sum())
        raise InputError(
            f"{name}: {n_bad} row(s) contain NaN or infinite values (or overflow float32); "
            "fix the embeddings before indexing or searching"
        )
    return arr


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise InputError(f"k: expected a positive int, got {k!r}")
    if k <= 0:
        raise InputError(f"k: number of results must be >= 1, got {k}")
    return int(k)


_faiss_io: Any = faiss  # faiss's type stubs lack its callback readers and writers


class _FaissEntry:
    """A faiss index to save as a ``uint8`` ``.npy`` entry, streamed straight into the file
    (``faiss.write_index`` through a callback writer): saving holds no serialised copy."""

    def __init__(self, index: Any) -> None:
        self.index = index

    def write(self, f: IO[bytes]) -> None:
        size = 0

        def count(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)

        faiss.write_index(self.index, _faiss_io.PyCallbackIOWriter(count))  # the size, first
        header = {"descr": "|u1", "fortran_order": False, "shape": (size,)}
        np.lib.format.write_array_header_1_0(f, header)
        faiss.write_index(self.index, _faiss_io.PyCallbackIOWriter(f.write))


class _NpzEntry:
    """One entry of an index file, read on demand: a faiss index is streamed from the file
    into ``faiss.read_index`` (loading holds no serialised copy either)."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key

    def faiss_index(self) -> Any:
        with zipfile.ZipFile(self.path) as zf, zf.open(f"{self.key}.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            if dtype != np.uint8 or len(shape) != 1:
                raise CheckpointError(
                    f"index file {str(self.path)!r}: entry {self.key!r} is not a serialised "
                    "faiss index"
                )
            return faiss.read_index(_faiss_io.PyCallbackIOReader(f.read))


def _atomic_savez(path: PathLike, arrays: Mapping[str, np.ndarray | _FaissEntry]) -> None:
    """An uncompressed ``.npz`` (what ``np.savez`` writes, readable by ``np.load``),
    atomically; faiss indexes are streamed into their entries one after another."""
    target = Path(path)
    try:
        with (
            atomic_path(target) as tmp,
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf,
        ):
            for name, value in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    if isinstance(value, _FaissEntry):
                        value.write(f)
                    else:
                        np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    except OSError as exc:
        raise CheckpointError(
            f"index path {str(target)!r} is not writable ({exc}); choose a writable location"
        ) from exc


_SHARD_PREFIX = "faiss_shard_"


def _is_faiss_entry(key: str) -> bool:
    return key == "faiss_index" or key.startswith(_SHARD_PREFIX)


def _read_payload(path: PathLike) -> dict[str, Any]:
    """The entries of an index file; the faiss indexes (``faiss_index``, ``faiss_shard_<i>``)
    as :class:`_NpzEntry`, read on demand."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"index file {str(p)!r} does not exist; save an index there first")
    try:
        with np.load(p, allow_pickle=False) as data:
            payload: dict[str, Any] = {
                key: _NpzEntry(p, key) if _is_faiss_entry(key) else data[key] for key in data.files
            }
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(
            f"index file {str(p)!r} is not a readable rechub index ({exc}); "
            "rebuild it and save it again"
        ) from exc
    for key in ("format", "version", "kind", "config", "ids"):
        if key not in payload:
            raise CheckpointError(
                f"index file {str(p)!r} lacks the {key!r} entry; it was not written by "
                "rechub's ItemIndex.save — rebuild and save it again"
            )
    if str(payload["format"]) != _FORMAT:
        raise CheckpointError(
            f"index file {str(p)!r} has format {str(payload['format'])!r}, expected {_FORMAT!r}"
        )
    if int(payload["version"]) > _VERSION:
        raise CheckpointError(
            f"index file {str(p)!r} has version {int(payload['version'])}, newer than this "
            f"rechub reads ({_VERSION}); upgrade rechub or rebuild the index"
        )
    return payload


# --------------------------------------------------------------------------- shared search logic


class _BaseIndex:
    """Validation, exclusion, multi-interest merge and persistence shared by the indexes.

    Subclasses implement ``_build_backend`` and ``_raw_search`` (top-``fetch`` positions in
    ``self._ids`` for ``(M, D)`` queries, ``-1`` where fewer were found).
    """

    saved_kind: ClassVar[str]

    def __init__(self) -> None:
        self._ids: np.ndarray | None = None  # (N,) int64 ids in build order
        self._sorted_ids: np.ndarray | None = None  # (N,) ids sorted, for id -> position lookup
        self._sort_order: np.ndarray | None = None  # (N,) position in _ids of each sorted id
        self._dim: int | None = None

    # -- public properties

    @property
    def is_built(self) -> bool:
        """Whether :meth:`build` (or :meth:`load`) has filled the index."""
        return self._ids is not None

    @property
    def dim(self) -> int:
        """Embedding dimension D of the indexed vectors."""
        if self._dim is None:
            raise InputError(f"{type(self).__name__} is not built yet: call build() first")
        return self._dim

    @property
    def ids(self) -> np.ndarray:
        """``(N,)`` int64 item ids, in the order given to :meth:`build` (a copy)."""
        return self._require_ids().copy()

    def __len__(self) -> int:
        return 0 if self._ids is None else int(self._ids.shape[0])

    # -- build

    def build(self, item_vectors: np.ndarray, item_ids: np.ndarray) -> None:
        """Index ``item_vectors`` under ``item_ids``, replacing any previous content.

        Args:
            item_vectors: ``(N, D)`` float32 item embeddings (other real dtypes are cast), N >= 1,
                all finite.
            item_ids: ``(N,)`` int64 ids, distinct and >= 0 (any values, not necessarily
                ``0..N-1``); ``-1`` is reserved for padding in search results.
        """
        vectors = _float_matrix(item_vectors, "item_vectors", (2,))
        n, d = vectors.shape
        if n == 0 or d == 0:
            raise InputError(
                f"item_vectors: need at least one item with dim >= 1, got shape {vectors.shape}"
            )
        ids = self._check_ids(item_ids, n)
        self._build_backend(vectors, ids)
        self._set_ids(ids)
        self._dim = d

    def build_from_batches(
        self, batches: Iterable[tuple[Any, Any]], n_total: int | None = None
    ) -> None:
        """Index item vectors that arrive batch by batch, replacing any previous content.

        Each batch is added as it comes, so a catalogue never needs its ``(N, D)`` matrix in
        memory besides the index (the exact index, which is that matrix, fills a buffer of
        ``n_total`` rows in place).

        Args:
            batches: ``(vectors, ids)`` pairs: ``(n_b, D)`` float32 vectors and ``(n_b,)``
                int64 ids, under the same rules as :meth:`build` over all batches together.
            n_total: the total number of items N when known: lets the index size itself
                (preallocation, IVF list count, shard boundaries); a wrong value only costs
                balance, not correctness.
        """
        if n_total is not None and n_total < 0:
            raise InputError(f"n_total must be >= 0, got {n_total}")
        state: Any = None
        id_parts: list[np.ndarray] = []
        n, d = 0, 0
        for vectors, ids in batches:
            v = _float_matrix(vectors, "item_vectors", (2,))
            i = _to_numpy(ids, "item_ids")
            if i.ndim != 1 or i.shape[0] != v.shape[0]:
                raise InputError(
                    f"item_ids: a batch has ids of shape {i.shape} for {v.shape[0]} vectors"
                )
            if v.shape[0] == 0:
                continue
            if state is None:
                d = int(v.shape[1])
                if d == 0:
                    raise InputError("item_vectors: need dim >= 1, got 0")
                state = self._stream_start(d, n_total)
            elif v.shape[1] != d:
                raise InputError(
                    f"item_vectors: a batch has dimension {v.shape[1]}, earlier ones {d}"
                )
            self._stream_add(state, v)
            id_parts.append(i)
            n += int(v.shape[0])
        if state is None:
            raise InputError("item_vectors: need at least one item, the batches were empty")
        checked = self._check_ids(np.concatenate(id_parts), n)
        self._stream_finish(state)
        self._set_ids(checked)
        self._dim = d

    def _stream_start(self, dim: int, n_total: int | None) -> Any:
        """Begin a streamed build of ``dim``-dimensional vectors; returns the build state."""
        raise NotImplementedError

    def _stream_add(self, state: Any, vectors: np.ndarray) -> None:
        """Add ``(n_b, D)`` vectors (positions follow on from earlier batches)."""
        raise NotImplementedError

    def _stream_finish(self, state: Any) -> None:
        """Install the built backend (called only when every batch was valid)."""
        raise NotImplementedError

    @staticmethod
    def _check_ids(item_ids: Any, n: int) -> np.ndarray:
        ids = _to_numpy(item_ids, "item_ids")
        if ids.ndim != 1 or ids.shape[0] != n:
            raise InputError(
                f"item_ids: expected shape ({n},) to match item_vectors, got {ids.shape}"
            )
        if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"item_ids: expected int64 ids, got dtype {ids.dtype}")
        ids = ids.astype(np.int64)
        if ids.size and int(ids.min()) < 0:
            raise InputError(
                f"item_ids: ids must be >= 0 (-1 marks padding in results), got min {ids.min()}"
            )
        uniq = np.unique(ids)
        if uniq.shape[0] != n:
            raise InputError(
                f"item_ids: {n - uniq.shape[0]} duplicate id(s); every item needs its own id"
            )
        return ids

    def _set_ids(self, ids: np.ndarray) -> None:
        self._ids = ids
        order = np.argsort(ids, kind="stable")
        self._sort_order = order
        self._sorted_ids = ids[order]

    def _require_ids(self) -> np.ndarray:
        if self._ids is None:
            raise InputError(
                f"{type(self).__name__} is not built yet: call build(item_vectors, item_ids) "
                "or load a saved index before search() or save()"
            )
        return self._ids

    # -- search

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by inner product.

        Args:
            queries: ``(B, D)`` float32 query vectors, or multi-interest ``(B, I, D)``; with
                several interests an item's score is its best score over the interests and it
                appears at most once.
            k: number of results per query, >= 1.
            exclude: optional, length B; ``exclude[b]`` lists ids never returned for query b
                (ids not in the index are ignored).

        Returns:
            ``ids`` ``(B, k)`` int64 and ``scores`` ``(B, k)`` float32 (inner products), best
            first. When fewer than k items are left for a query, the tail is padded with id
            ``-1`` and score ``-inf``.
        """
        ids_all = self._require_ids()
        k = _check_k(k)
        q = _float_matrix(queries, "queries", (2, 3))
        if q.shape[-1] != self._dim:
            raise InputError(
                f"queries: dimension {q.shape[-1]} does not match the index dimension "
                f"{self._dim}; use the user tower that matches the indexed item tower"
            )
        if q.ndim == 2:
            q = q[:, None, :]
        n_queries, n_interests = q.shape[0], q.shape[1]
        if n_interests == 0:
            raise InputError("queries: multi-interest queries with 0 interests")
        n = int(ids_all.shape[0])

        excl_keys, n_excl = self._exclusion_keys(exclude, n_queries, n)
        out_ids = np.full((n_queries, k), -1, dtype=np.int64)
        out_scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
        if n_queries == 0:
            return out_ids, out_scores

        expected = np.minimum(n - n_excl, np.int64(k))  # results each row must get
        rows = np.arange(n_queries)
        fetch = min(n, k + int(n_excl.max()))
        effort, max_effort = 1, self._max_effort()
        while rows.size:
            got_ids, got_scores, n_valid = self._search_rows(
                q[rows], rows, fetch, k, excl_keys, n, effort
            )
            out_ids[rows] = got_ids
            out_scores[rows] = got_scores
            short = n_valid < expected[rows]
            if not short.any() or (fetch >= n and effort >= max_effort):
                break
            # approximate search came back short: search those rows again, wider
            rows = rows[short]
            fetch = min(n, 2 * fetch)
            effort = min(max_effort, 2 * effort)
        return out_ids, out_scores

    def _positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Build position in ``0..N-1`` of each id and whether the id is in the index."""
        assert self._sorted_ids is not None and self._sort_order is not None
        sorted_ids = self._sorted_ids
        loc = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.shape[0] - 1)
        return self._sort_order[loc], sorted_ids[loc] == ids

    def _exclusion_keys(
        self, exclude: Sequence[Sequence[int]] | None, n_queries: int, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique keys ``row * N + position`` of excluded (query, item) pairs and the number
        of distinct indexed ids excluded per query ``(B,)``."""
        n_excl = np.zeros(n_queries, dtype=np.int64)
        if exclude is None:
            return np.empty(0, dtype=np.int64), n_excl
        if isinstance(exclude, np.ndarray) and exclude.ndim == 2:
            exclude = list(exclude)
        if len(exclude) != n_queries:
            raise InputError(
                f"exclude: expected one list of ids per query ({n_queries}), got {len(exclude)}"
            )
        lengths = np.fromiter((len(e) for e in exclude), dtype=np.int64, count=n_queries)
        if lengths.sum() == 0:
            return np.empty(0, dtype=np.int64), n_excl
        try:
            flat = np.concatenate([np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude])
        except (TypeError, ValueError) as exc:
            raise InputError(f"exclude: every entry must be a list of int ids ({exc})") from exc
        rows = np.repeat(np.arange(n_queries, dtype=np.int64), lengths)
        positions, present = self._positions(flat)
        keys = np.unique(rows[present] * n + positions[present])
        n_excl = np.bincount(keys // n, minlength=n_queries).astype(np.int64)
        return keys, n_excl

    def _search_rows(
        self,
        q: np.ndarray,
        rows: np.ndarray,
        fetch: int,
        k: int,
        excl_keys: np.ndarray,
        n: int,
        effort: int = 1,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Search ``q`` ``(b, I, D)`` fetching ``fetch`` per interest; merge, filter, top-k.

        Returns ids ``(b, k)``, scores ``(b, k)`` and the number of valid results ``(b,)``.
        """
        assert self._ids is not None
        b, n_interests, d = q.shape
        pos, scores = self._raw_search(q.reshape(b * n_interests, d), fetch, effort)
        pos = pos.reshape(b, n_interests * fetch)
        scores = scores.reshape(b, n_interests * fetch).astype(np.float32, copy=False)
        valid = pos >= 0
        scores = np.where(valid, scores, np.float32(-np.inf))
        codes = np.where(valid, pos, np.int64(0))
        if excl_keys.size:
            keys = rows[:, None].astype(np.int64) * n + codes
            valid &= ~np.isin(keys, excl_keys)
        if n_interests > 1:  # keep each item's best score once
            order = np.lexsort((-scores, codes), axis=-1)
            c_sorted = np.take_along_axis(codes, order, axis=1)
            dup_sorted = np.zeros_like(valid)
            dup_sorted[:, 1:] = c_sorted[:, 1:] == c_sorted[:, :-1]
            dup = np.empty_like(dup_sorted)
            np.put_along_axis(dup, order, dup_sorted, axis=1)
            valid &= ~dup
        # best first among valid candidates; stable, so ties keep the backend's order
        order = np.lexsort((-scores, ~valid), axis=-1)[:, :k]
        top_valid = np.take_along_axis(valid, order, axis=1)
        top_pos = np.take_along_axis(pos, order, axis=1)
        top_scores = np.take_along_axis(scores, order, axis=1)
        m = order.shape[1]  # k, or fewer when the index holds fewer candidates
        out_ids = np.full((b, k), -1, dtype=np.int64)
        out_scores = np.full((b, k), -np.inf, dtype=np.float32)
        out_ids[:, :m] = np.where(
            top_valid, self._ids[np.where(top_valid, top_pos, np.int64(0))], -1
        )
        out_scores[:, :m] = np.where(top_valid, top_scores, np.float32(-np.inf))
        return out_ids, out_scores, top_valid.sum(axis=1)

    # -- backend hooks

    def _build_backend(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        raise NotImplementedError

    def _raw_search(
        self, q: np.ndarray, fetch: int, effort: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``(M, fetch)`` int64 in ``self._ids`` (``-1`` = none) and float32 scores
        of the best ``fetch`` items for each of the ``(M, D)`` queries. ``effort`` >= 1 asks an
        approximate backend to search wider (IVF: ``nprobe * effort`` lists)."""
        raise NotImplementedError

    def _max_effort(self) -> int:
        """Largest useful ``effort`` for :meth:`_raw_search` (1: effort changes nothing)."""
        return 1

    def _config(self) -> dict[str, Any]:
        return {}

    def _payload(self) -> dict[str, Any]:
        """Entries saved besides kind, config and ids (arrays, or functions returning one)."""
        raise NotImplementedError

    # -- persistence

    def save(self, path: PathLike) -> None:
        """Write the index to ``path`` (one ``.npz`` file), atomically.

        The file holds the kind, the configuration, the ids and the vectors or the serialized
        faiss index; read it back with :meth:`load` or :func:`load_index`.
        """
        ids = self._require_ids()
        arrays = {
            "format": np.array(_FORMAT),
            "version": np.array(_VERSION),
            "kind": np.array(self.saved_kind),
            "config": np.array(json.dumps(self._config(), sort_keys=True)),
            "ids": ids,
            **self._payload(),
        }
        _atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: PathLike) -> Self:
        """Read an index written by :meth:`save`; the file's kind must match this class
        (use :func:`load_index` to accept either kind)."""
        payload = _read_payload(path)
        kind = str(payload["kind"])
        if kind != cls.saved_kind:
            raise CheckpointError(
                f"index file {str(path)!r} holds a {kind!r} index, not {cls.saved_kind!r}; "
                "read it with rechub_core.index.load_index"
            )
        return cls._from_payload(payload, path)

    @classmethod
    def _from_payload(cls, payload: dict[str, Any], path: PathLike) -> Self:
        raise NotImplementedError


# --------------------------------------------------------------------------- exact


class ExactIndex(_BaseIndex):
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

    def _stream_finish(self, state: Any) -> None:
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


# --------------------------------------------------------------------------- faiss


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


class FaissIndex(_BaseIndex):
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

    def _stream_finish(self, state: _FaissBuild) -> None:
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
        self._stream_finish(state)

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
            return {"faiss_index": _FaissEntry(self._subs[0])}
        # faiss cannot serialise IndexShards: one entry per shard
        return {f"{_SHARD_PREFIX}{i}": _FaissEntry(sub) for i, sub in enumerate(self._subs)}

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
        n_shards = sum(1 for k in payload if k.startswith(_SHARD_PREFIX))
        keys += [f"{_SHARD_PREFIX}{i}" for i in range(n_shards)]
        if not keys or any(k not in payload for k in keys):
            raise CheckpointError(f"index file {str(path)!r} lacks the faiss index; save it again")
        subs = []
        for key in keys:
            entry = payload[key]
            try:
                if isinstance(entry, _NpzEntry):
                    subs.append(entry.faiss_index())
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


# --------------------------------------------------------------------------- loading


_KINDS: dict[str, type[_BaseIndex]] = {"exact": ExactIndex, "faiss": FaissIndex}


def load_index(path: PathLike) -> ItemIndex:
    """Read an index saved by :meth:`ExactIndex.save` or :meth:`FaissIndex.save`, of either
    kind, from ``path``."""
    payload = _read_payload(path)
    kind = str(payload["kind"])
    if kind not in _KINDS:
        raise CheckpointError(
            f"index file {str(path)!r} holds an unknown index kind {kind!r}; "
            f"known kinds: {sorted(_KINDS)}"
        )
    return _KINDS[kind]._from_payload(payload, path)
