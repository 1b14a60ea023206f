"""Annoy (Spotify's "Approximate Nearest Neighbors Oh Yeah") as a rechub item index.

Annoy builds a forest of random projection trees over the item vectors and answers a query by
visiting ``search_k`` tree nodes. Two metrics:

* ``"dot"``: maximum inner product (what every rechub index ranks by); scores are inner
  products.
* ``"angular"``: cosine similarity; scores are cosines (``1 - d^2 / 2`` of Annoy's angular
  distance ``d``). The ranking equals inner product ranking when item vectors have one norm
  (e.g. normalised towers such as DSSM's).

Everything else — exclusion of seen items, the multi-interest merge, streamed builds, the
``.npz`` file with the Annoy forest inside — is :class:`rechub_core.index.Index`'s.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Self

import annoy
import numpy as np

from rechub_core.errors import CheckpointError, InputError
from rechub_core.index import Index
from rechub_core.index.storage import FileEntry, NpzEntry

__all__ = ["AnnoyIndex"]

_METRICS = ("dot", "angular")
_FOREST = "blob_annoy"  # the saved Annoy file, as a raw-bytes entry of the index file
#: an approximate row that came back short is searched again with search_k this many times
#: larger at most (doubling each time)
_MAX_EFFORT = 16


class AnnoyIndex(Index):
    """Annoy forest over item vectors.

    Args:
        metric: ``"dot"`` (inner product, default) or ``"angular"`` (cosine).
        n_trees: trees in the forest; more trees: better recall, bigger index, slower build.
        search_k: tree nodes inspected per query; ``-1`` (default) means Annoy's default,
            ``n_trees * number of results fetched``. Larger: better recall, slower queries.
        n_jobs: threads used to build the trees (``-1``: every core).
        seed: random seed of the tree splits, so that a build is reproducible.
    """

    saved_kind: ClassVar[str] = "annoy"

    def __init__(
        self,
        metric: str = "dot",
        n_trees: int = 50,
        search_k: int = -1,
        n_jobs: int = -1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if metric not in _METRICS:
            raise InputError(f"metric: expected one of {_METRICS}, got {metric!r}")
        for name, value, low in (("n_trees", n_trees, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name}: expected an int >= {low}, got {value!r}")
        for name, value in (("search_k", search_k), ("n_jobs", n_jobs)):
            if isinstance(value, bool) or not isinstance(value, int) or value == 0 or value < -1:
                raise InputError(f"{name}: expected -1 or a positive int, got {value!r}")
        self.metric = metric
        self.n_trees = n_trees
        self.search_k = search_k
        self.n_jobs = n_jobs
        self.seed = seed
        self._annoy: Any = None
        # the file a loaded forest is memory-mapped from; removed with the index
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    # -- building

    def _build_backend(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        forest = annoy.AnnoyIndex(int(vectors.shape[1]), self.metric)
        forest.set_seed(self.seed)
        for position, vector in enumerate(vectors):  # Annoy takes one item at a time
            forest.add_item(position, vector)
        forest.build(self.n_trees, n_jobs=self.n_jobs)
        self._annoy, self._folder = forest, None

    # -- search

    def _max_effort(self) -> int:
        return _MAX_EFFORT

    def _raw_search(
        self, q: np.ndarray, fetch: int, effort: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        fetch = min(fetch, len(self))
        base = self.search_k if self.search_k > 0 else self.n_trees * fetch
        search_k = base * effort
        pos = np.full((q.shape[0], fetch), -1, dtype=np.int64)
        scores = np.full((q.shape[0], fetch), -np.inf, dtype=np.float32)
        for row, query in enumerate(q):
            found, dist = self._annoy.get_nns_by_vector(
                query, fetch, search_k=search_k, include_distances=True
            )
            m = len(found)
            pos[row, :m] = found
            d = np.asarray(dist, dtype=np.float32)
            scores[row, :m] = d if self.metric == "dot" else 1.0 - 0.5 * d * d
        return pos, scores

    # -- persistence

    def _config(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "n_trees": self.n_trees,
            "search_k": self.search_k,
            "n_jobs": self.n_jobs,
            "seed": self.seed,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index (ids, configuration and the Annoy forest) to one file, atomically."""
        self._require_ids()
        with tempfile.TemporaryDirectory(prefix="rechub-annoy-") as tmp:
            forest_file = Path(tmp) / "forest.ann"
            # Annoy saves only to a file, and then maps that file: keep the index usable by
            # loading it from our own copy afterwards
            if not self._annoy.save(str(forest_file)):
                raise CheckpointError(f"Annoy could not write its forest to {tmp}")
            self._pending_forest = forest_file
            try:
                super().save(path)
            finally:
                del self._pending_forest
            self._annoy = self._map_forest(forest_file, self.dim)

    def _payload(self) -> dict[str, Any]:
        return {"dim": np.array(self.dim), _FOREST: FileEntry(self._pending_forest)}

    def _map_forest(self, source: Path | NpzEntry, dim: int) -> Any:
        """A forest memory-mapped from a private copy of ``source`` (file or index entry)."""
        folder = tempfile.TemporaryDirectory(prefix="rechub-annoy-")
        target = Path(folder.name) / "forest.ann"
        if isinstance(source, NpzEntry):
            source.copy_to(target)
        else:
            shutil.copyfile(source, target)
        forest = annoy.AnnoyIndex(dim, self.metric)
        if not forest.load(str(target)):
            folder.cleanup()
            raise CheckpointError(f"Annoy could not read its forest from {target}")
        self._folder = folder
        return forest

    @classmethod
    def _from_payload(cls, payload: dict[str, Any], path: str | os.PathLike[str]) -> Self:
        try:
            config = json.loads(str(payload["config"]))
            index = cls(**config)
            dim = int(payload["dim"])
        except (KeyError, ValueError, TypeError, InputError) as exc:
            raise CheckpointError(
                f"index file {str(path)!r} has an unusable Annoy configuration ({exc}); "
                "rebuild the index"
            ) from exc
        entry = payload.get(_FOREST)
        if not isinstance(entry, NpzEntry):
            raise CheckpointError(f"index file {str(path)!r} lacks the Annoy forest; save it again")
        forest = index._map_forest(entry, dim)
        ids = payload["ids"].astype(np.int64)
        if forest.get_n_items() != ids.shape[0]:
            raise CheckpointError(
                f"index file {str(path)!r}: the forest holds {forest.get_n_items()} items but "
                f"{ids.shape[0]} ids; rebuild the index"
            )
        index._annoy = forest
        index._set_ids(ids)
        index._dim = dim
        return index
