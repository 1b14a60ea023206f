"""Scoring a peer library's exported vectors (``benchmarks/quality.py``): a peer whose scores
collapse to a few values gets no result from ties in its favour (the measurements themselves
are not run here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.quality import external_row
from rechub_core.preprocess import PreparedData


def _runner_output(out: Path, users: np.ndarray, items: np.ndarray) -> Path:
    out.mkdir()
    (out / "info.json").write_text(json.dumps({"error": None, "epochs": 1}))
    np.save(out / "user_test.npy", users.astype(np.float32))
    np.save(out / "item.npy", items.astype(np.float32))
    return out


def test_collapsed_peer_scores_are_no_result(synthetic: PreparedData, tmp_path: Path) -> None:
    n_users = len(synthetic.test.target)
    n_rows = synthetic.vocab["item_id"]  # item rows incl. padding
    rng = np.random.default_rng(0)
    collapsed = _runner_output(
        tmp_path / "collapsed", np.tile([1.0, 0.0], (n_users, 1)), np.tile([1.0, 0.0], (n_rows, 1))
    )
    row = external_row("peer", "GRU4Rec", collapsed, synthetic)
    # every item ties: with ties for the target each one ranks first (NDCG@10 = 1)
    assert row["metrics"]["ndcg@10"] == 1.0
    assert row["ndcg@10_ties_against"] < 0.1
    assert "collapsed scores, not a result" in row["error"]
    healthy = _runner_output(
        tmp_path / "healthy", rng.normal(size=(n_users, 8)), rng.normal(size=(n_rows, 8))
    )
    row = external_row("peer", "GRU4Rec", healthy, synthetic)
    assert row["error"] is None
    assert row["ndcg@10_ties_against"] == row["metrics"]["ndcg@10"]  # continuous: no ties
