"""Conformance kit for item indexes: does an index honour the :class:`~rechub_core.index.Index`
contract? Used through :func:`rechub_core.testing.check_index` (and the pytest fixture
``rechub_index_conformance``); every built-in and plugin index should pass it.

The checks (:data:`INDEX_CHECKS`), on seeded clustered vectors (the shape of real embeddings,
unit norm, so that cosine indexes are checked by the same numbers):

* ``contract``: the factory builds an :class:`Index` whose ``saved_kind`` is its registered
  name (so that a saved file finds its reader).
* ``recall``: recall@k against :class:`ExactIndex` is at least ``min_recall``; results are
  ``(B, k)`` int64 / float32, best first, without duplicates.
* ``exclude``: excluding each query's exact top-k still returns k results, none excluded.
* ``multi_interest``: ``(B, I, D)`` queries return each item at most once, with recall of the
  exact merge (best score over the interests) at least ``min_recall``.
* ``round_trip``: ``save`` then :func:`load_index` (or the class's ``load``) gives the same
  results.
* ``empty``: building from no items raises :class:`InputError` (``build`` and
  ``build_from_batches``), not a crash inside the backend.
* ``single_item``: a one-item catalogue returns that item then ``-1`` padding, and nothing
  once it is excluded.
* ``streamed``: ``build_from_batches`` in several batches reaches the same recall as ``build``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rechub_core.errors import InputError, RechubError
from rechub_core.index.base import Index
from rechub_core.index.exact import ExactIndex
from rechub_core.specs import IndexSpec
from rechub_core.testing import CheckFailed, ConformanceReport
from rechub_core.testing._report import run_checks, scratch_folder

__all__ = ["INDEX_CHECKS", "check_index"]

INDEX_CHECKS: tuple[str, ...] = (
    "contract",
    "recall",
    "exclude",
    "multi_interest",
    "round_trip",
    "empty",
    "single_item",
    "streamed",
)

IndexSource = str | IndexSpec | Callable[..., Index]


class _Case:
    """The index under test and its data: items ``(N, D)``, queries ``(B, D)``."""

    def __init__(
        self,
        name: str | None,
        factory: Callable[..., Any],
        params: Mapping[str, Any],
        n_items: int,
        dim: int,
        k: int,
        min_recall: float,
        seed: int,
        folder: Path,
    ) -> None:
        self.name, self.factory, self.params = name, factory, dict(params)
        self.k, self.min_recall, self.folder = k, min_recall, folder
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((max(4, n_items // 100), dim))
        self.items = self._near(rng, centres, n_items)  # (N, D)
        self.ids = rng.choice(10 * n_items + 10, size=n_items, replace=False) + 1  # not 0..N-1
        self.queries = self._near(rng, centres, 64)  # (B, D)
        self.multi = np.stack([self.queries, self._near(rng, centres, 64)], axis=1)  # (B, 2, D)
        self.exact = ExactIndex()
        self.exact.build(self.items, self.ids)
        self._built: Index | None = None

    @staticmethod
    def _near(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
        x = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal(
            (n, centres.shape[1])
        )
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def new(self) -> Index:
        index = self.factory(**self.params)
        if not isinstance(index, Index):
            raise CheckFailed(
                f"the factory built a {type(index).__name__}, not a rechub_core.index.Index",
                "subclass rechub_core.index.Index and implement its backend hooks",
            )
        return index

    def built(self) -> Index:
        if self._built is None:
            self._built = self.new()
            self._built.build(self.items, self.ids)
        return self._built

    def recall(self, got: np.ndarray, want: np.ndarray) -> float:
        hits = [
            len(set(g[g >= 0].tolist()) & set(w[w >= 0].tolist()))
            for g, w in zip(got, want, strict=True)
        ]
        return float(np.sum(hits) / max(1, int((want >= 0).sum())))

    def need_recall(self, got: np.ndarray, want: np.ndarray, what: str) -> None:
        r = self.recall(got, want)
        if r < self.min_recall:
            raise CheckFailed(
                f"{what}: recall@{self.k} against exact search is {r:.3f}, below {self.min_recall}",
                "search wider by default (or pass params that do, e.g. a larger search budget) "
                "and check that positions map back to the right ids",
            )


def _check_contract(case: _Case) -> None:
    index = case.new()
    if case.name is not None and index.saved_kind.lower() != case.name.lower().replace("-", "_"):
        raise CheckFailed(
            f"saved_kind is {index.saved_kind!r} but the index is registered as {case.name!r}",
            "set saved_kind to the registered name, so that load_index finds the reader",
        )


def _rows_ok(ids: np.ndarray, scores: np.ndarray, b: int, k: int, what: str) -> None:
    if ids.shape != (b, k) or scores.shape != (b, k):
        raise CheckFailed(f"{what}: shapes {ids.shape} / {scores.shape}, expected ({b}, {k})", "")
    if ids.dtype != np.int64 or scores.dtype != np.float32:
        raise CheckFailed(f"{what}: dtypes {ids.dtype} / {scores.dtype}", "return int64 / float32")
    if (np.diff(scores, axis=1) > 1e-5).any():
        raise CheckFailed(f"{what}: scores are not best first", "sort each row by score")
    for row in ids:
        real = row[row >= 0]
        if len(np.unique(real)) != len(real):
            raise CheckFailed(f"{what}: an item appears twice in one row", "")


def _check_recall(case: _Case) -> None:
    ids, scores = case.built().search(case.queries, case.k)
    _rows_ok(ids, scores, len(case.queries), case.k, "search")
    case.need_recall(ids, case.exact.search(case.queries, case.k)[0], "search")


def _check_exclude(case: _Case) -> None:
    top = case.exact.search(case.queries, case.k)[0]
    exclude = [row.tolist() for row in top]
    ids, _ = case.built().search(case.queries, case.k, exclude=exclude)
    if any(np.isin(got, excluded).any() for got, excluded in zip(ids, top, strict=True)):
        raise CheckFailed("an excluded id was returned", "filter excluded ids after fetching")
    if (ids < 0).any():
        raise CheckFailed(
            "with exclusion, rows came back short of k although items were left",
            "over-fetch k + the number of excluded ids (the base class does; keep _raw_search "
            "returning `fetch` candidates)",
        )


def _check_multi_interest(case: _Case) -> None:
    ids, scores = case.built().search(case.multi, case.k)
    _rows_ok(ids, scores, len(case.multi), case.k, "multi-interest search")
    case.need_recall(ids, case.exact.search(case.multi, case.k)[0], "multi-interest search")


def _check_round_trip(case: _Case) -> None:
    from rechub_core.index import load_index

    index = case.built()
    path = case.folder / "index.npz"
    index.save(path)
    loaded = load_index(path) if case.name is not None else type(index).load(path)
    if type(loaded) is not type(index):
        raise CheckFailed(f"loaded a {type(loaded).__name__}, saved a {type(index).__name__}", "")
    before, after = index.search(case.queries, case.k), loaded.search(case.queries, case.k)
    if not np.array_equal(before[0], after[0]) or not np.allclose(before[1], after[1]):
        raise CheckFailed(
            "the loaded index answers differently from the saved one",
            "save everything search depends on (_payload) and restore it in _from_payload",
        )


def _check_empty(case: _Case) -> None:
    empty = np.zeros((0, case.items.shape[1]), dtype=np.float32)
    no_ids = np.zeros(0, dtype=np.int64)
    builds: list[tuple[str, Callable[[Index], None]]] = [
        ("build", lambda index: index.build(empty, no_ids)),
        ("build_from_batches", lambda index: index.build_from_batches(iter([(empty, no_ids)]))),
    ]
    for what, build in builds:
        try:
            build(case.new())
        except InputError:
            continue
        except Exception as exc:
            raise CheckFailed(
                f"{what} of an empty catalogue raised {type(exc).__name__}: {exc}",
                "let the base class reject empty catalogues with InputError",
            ) from exc
        raise CheckFailed(f"{what} of an empty catalogue did not raise InputError", "")


def _check_single_item(case: _Case) -> None:
    index = case.new()
    index.build(case.items[:1], case.ids[:1])
    ids, scores = index.search(case.queries[:3], 5)
    if not (ids[:, 0] == case.ids[0]).all() or not (ids[:, 1:] == -1).all():
        raise CheckFailed(f"one-item catalogue returned {ids.tolist()}", "pad with -1 / -inf")
    if not np.isneginf(scores[:, 1:]).all():
        raise CheckFailed("padding scores are not -inf", "pad with -1 / -inf")
    ids, _ = index.search(case.queries[:3], 5, exclude=[[int(case.ids[0])]] * 3)
    if not (ids == -1).all():
        raise CheckFailed("the only item came back although it was excluded", "")


def _check_streamed(case: _Case) -> None:
    index = case.new()
    parts = np.array_split(np.arange(len(case.ids)), 3)
    index.build_from_batches(((case.items[p], case.ids[p]) for p in parts), len(case.ids))
    if not np.array_equal(np.sort(index.ids), np.sort(case.ids)):
        raise CheckFailed("a streamed build lost or changed ids", "keep every batch's ids")
    ids, _ = index.search(case.queries, case.k)
    case.need_recall(ids, case.exact.search(case.queries, case.k)[0], "streamed build")


_CHECKS: dict[str, Callable[[_Case], None]] = {
    "contract": _check_contract,
    "recall": _check_recall,
    "exclude": _check_exclude,
    "multi_interest": _check_multi_interest,
    "round_trip": _check_round_trip,
    "empty": _check_empty,
    "single_item": _check_single_item,
    "streamed": _check_streamed,
}


def _resolve(index: IndexSource) -> tuple[str | None, Callable[..., Any]]:
    if isinstance(index, str):
        from rechub_core.plugins import get_spec

        spec = get_spec("index", index)
        return spec.name, spec.factory
    if isinstance(index, IndexSpec):
        return index.name, index.factory
    if callable(index):
        return None, index
    raise RechubError(
        f"check_index needs a registered index name, an IndexSpec or a factory, got "
        f"{type(index).__name__}"
    )


def check_index(
    index: IndexSource,
    *,
    params: Mapping[str, Any] | None = None,
    checks: Sequence[str] | None = None,
    n_items: int = 2000,
    dim: int = 16,
    k: int = 10,
    min_recall: float = 0.9,
    seed: int = 0,
    workdir: str | Path | None = None,
) -> ConformanceReport:
    """Run the index checks and report every result (nothing is raised for a failing check;
    call :meth:`ConformanceReport.raise_for_failures`).

    Args:
        index: a registered index name (``"annoy"``), its :class:`IndexSpec`, or a factory
            ``factory(**params) -> Index``.
        params: constructor parameters (e.g. ``{"kind": "hnsw"}``).
        checks: names from :data:`INDEX_CHECKS` (default: all).
        n_items, dim: catalogue size and dimension of the random vectors.
        k: results per query.
        min_recall: recall@k against exact search an approximate index must reach.
        seed: seed of the vectors.
        workdir: folder for the saved index (default: a temporary folder).
    """
    selected = list(INDEX_CHECKS if checks is None else checks)
    unknown = [c for c in selected if c not in _CHECKS]
    if unknown:
        raise RechubError(f"unknown index check(s) {unknown}; the checks are {INDEX_CHECKS}")
    name, factory = _resolve(index)
    label = name or str(getattr(factory, "__qualname__", type(factory).__name__))
    if params:
        label += f"({', '.join(f'{k}={v!r}' for k, v in params.items())})"
    with scratch_folder(workdir, prefix="rechub-index-conformance-") as folder:
        case = _Case(name, factory, params or {}, n_items, dim, k, min_recall, seed, folder)
        fix = "implement the Index backend hooks as documented in rechub_core.index.base"
        results = run_checks(label, selected, _CHECKS, case, fix)
    return ConformanceReport(label, tuple(results))
