"""The index conformance kit (rechub_core.testing.check_index) over every registered index, and
on a deliberately broken one, whose failure names the check and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from rechub_core.index import ExactIndex
from rechub_core.plugins import list_components
from rechub_core.testing import check_index

pytest_plugins = ["rechub_core.testing"]  # fixture: rechub_index_conformance

#: parameters worth checking for each index name; other registered indexes get their defaults
VARIANTS: dict[str, list[dict[str, object]]] = {
    "faiss": [{"kind": "flat"}, {"kind": "hnsw"}, {"kind": "ivf"}, {"kind": "flat", "shards": 2}],
    "annoy": [{"metric": "dot"}, {"metric": "angular", "n_trees": 20}],
}


def cases() -> list[tuple[str, dict[str, object]]]:
    return [(name, p) for name in list_components("index") for p in VARIANTS.get(name, [{}])]


@pytest.mark.parametrize(("name", "params"), cases())
def test_every_registered_index_conforms(name, params, rechub_index_conformance) -> None:
    report = rechub_index_conformance(name, params=params)
    assert {r.check for r in report.results} >= {"recall", "round_trip", "empty", "single_item"}


class OffByOne(ExactIndex):
    """Maps backend positions to the neighbouring item: every id it returns is wrong."""

    def _raw_search(self, q, fetch, effort=1):
        pos, scores = super()._raw_search(q, fetch, effort)
        return np.where(pos >= 0, (pos + 1) % len(self), pos), scores


def test_a_broken_index_fails_with_the_check_and_the_fix() -> None:
    report = check_index(OffByOne, checks=["recall", "single_item"])
    assert not report.ok
    (failure,) = [r for r in report.failures if r.check == "recall"]
    assert "check 'recall' failed: search: recall@10 against exact search is" in failure.message
    assert "Fix: search wider by default" in failure.message
    assert report.result("single_item").status == "passed"  # one item: no neighbour to confuse


def test_unknown_checks_are_named() -> None:
    with pytest.raises(Exception, match=r"unknown index check\(s\) \['speed'\]"):
        check_index("exact", checks=["speed"])
