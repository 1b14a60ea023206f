"""The public base class of item indexes, :class:`Index`, and the protocol :class:`ItemIndex`.

An index holds item vectors ``(N, D)`` float32 under arbitrary non-negative int64 item ids and
answers top-k maximum-inner-product queries (score = dot product, higher is better). The base
class does everything that is the same for every backend: input checks, per-query exclusion of
ids (the user's seen items), the multi-interest merge (each interest ``(B, I, D)`` is searched,
candidates merged keeping each item's best score once; DESIGN.md §4–5), streamed builds
(``build_from_batches``) and persistence (one ``.npz`` file, :mod:`rechub_core.index.storage`).

Exclusion works by over-fetching ``k + (number of excluded ids in the index)`` candidates per
interest and filtering; exact for exact search. Rows that still come back short (approximate
indexes) are searched again with a doubled fetch, up to the whole index.

A backend (a built-in one, or a plugin's, e.g. ``rechub_plugins_annoy``) subclasses
:class:`Index` and implements four methods (the "backend hooks", underscored because callers
never use them):

* ``_build_backend(vectors (N, D) float32, ids (N,) int64)``: index the vectors; position ``p``
  in the backend is ``ids[p]``;
* ``_raw_search(queries (M, D), fetch, effort) -> (positions (M, fetch) int64, scores (M, fetch)
  float32)``: the best ``fetch`` positions per query by inner product, ``-1`` where fewer;
* ``_payload() -> {name: array | StreamEntry}`` and the classmethod
  ``_from_payload(payload, path) -> Self``: what :meth:`Index.save` writes besides the ids, and
  how :meth:`Index.load` rebuilds the index from it;

and sets ``saved_kind`` to its registered name. ``_config()`` (constructor arguments, saved as
JSON), ``_max_effort()`` and the streaming hooks ``_stream_start/_stream_add/_stream_finish``
have defaults (the default stream collects the batches and calls ``_build_backend`` once).
The conformance kit (:func:`rechub_core.testing.check_index`) checks a backend.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from rechub_core.errors import CheckpointError, InputError
from rechub_core.index.storage import FORMAT, VERSION, atomic_savez, read_payload

__all__ = ["Index", "ItemIndex", "check_k", "float_matrix", "to_numpy"]

PathLike = str | os.PathLike[str]


@runtime_checkable
class ItemIndex(Protocol):
    """What the serving path needs from an item index (every :class:`Index` is one)."""

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


def distribution_of(cls: type) -> str:
    """The installed distribution that ships ``cls``'s top-level package ("" when unknown)."""
    top = cls.__module__.split(".")[0]
    found = md.packages_distributions().get(top, [])
    return found[0] if found else ""


# --------------------------------------------------------------------------- helpers


def to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` (numpy array, torch tensor or array-like) as a numpy array."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        return np.asarray(x.detach().cpu().numpy())
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise InputError(f"{name}: cannot convert {type(x).__name__} to a numpy array") from exc


def float_matrix(x: Any, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    """``x`` as a C-contiguous float32 array of one of ``ndims`` dimensions, all finite."""
    arr = to_numpy(x, name)
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


def check_k(k: int) -> int:
    """``k`` as an int >= 1, or an :class:`InputError`."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise InputError(f"k: expected a positive int, got {k!r}")
    if k <= 0:
        raise InputError(f"k: number of results must be >= 1, got {k}")
    return int(k)


# --------------------------------------------------------------------------- shared search logic


class Index:
    """An item index: build (at once or streamed), search with exclusion and multi-interest
    merge, save and load. Subclasses implement the backend hooks (see the module docstring).

    Attributes:
        saved_kind: the registered name of the index; saved in its file so that
            :func:`rechub_core.index.load_index` finds the plugin that reads it.
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
        vectors = float_matrix(item_vectors, "item_vectors", (2,))
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
            v = float_matrix(vectors, "item_vectors", (2,))
            i = to_numpy(ids, "item_ids")
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
        self._stream_finish(state, checked)
        self._set_ids(checked)
        self._dim = d

    def _stream_start(self, dim: int, n_total: int | None) -> Any:
        """Begin a streamed build of ``dim``-dimensional vectors; returns the build state.

        The default collects the batches (a backend that can add vectors as they come
        overrides the three ``_stream_*`` hooks)."""
        return []

    def _stream_add(self, state: Any, vectors: np.ndarray) -> None:
        """Add ``(n_b, D)`` vectors (positions follow on from earlier batches)."""
        state.append(vectors)

    def _stream_finish(self, state: Any, ids: np.ndarray) -> None:
        """Install the built backend (called only when every batch was valid); ``ids`` ``(N,)``
        are the checked ids of every batch, in order."""
        vectors = state[0] if len(state) == 1 else np.concatenate(state)
        state.clear()
        self._build_backend(vectors, ids)

    @staticmethod
    def _check_ids(item_ids: Any, n: int) -> np.ndarray:
        ids = to_numpy(item_ids, "item_ids")
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
        k = check_k(k)
        q = float_matrix(queries, "queries", (2, 3))
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
            "format": np.array(FORMAT),
            "version": np.array(VERSION),
            "kind": np.array(self.saved_kind),
            "provider": np.array(distribution_of(type(self))),
            "config": np.array(json.dumps(self._config(), sort_keys=True)),
            "ids": ids,
            **self._payload(),
        }
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: PathLike) -> Self:
        """Read an index written by :meth:`save`; the file's kind must match this class
        (use :func:`load_index` to accept either kind)."""
        payload = read_payload(path)
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
