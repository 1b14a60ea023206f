#!/usr/bin/env python3
"""Quick self-check scorer for an external runner's output (numpy only, not the project's metrics).

    python benchmarks/external/score_dev.py SPLIT OUT          # score OUT/ (vectors or scores)
    python benchmarks/external/score_dev.py SPLIT --mostpop    # reference MostPop (training counts)

Full ranking of items 1..N for every test user; row/column 0 and the user's history items
(train + val) are excluded; the single test target is ranked among the rest.
Reports NDCG@10, HR@10, HR@50, MRR@10. Multi-interest user vectors (U, K, D) are scored by the
best interest per item (max over K), which is "retrieve per interest, merge by best score".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load_split(split: Path):
    meta = json.loads((split / "meta.json").read_text())
    U, N = meta["n_users"], meta["n_items"]

    def read(name):
        a = np.loadtxt(split / name, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
        return a

    train = read("train.csv")
    val = read("val.csv")
    test = read("test.csv")
    return U, N, train, val, test


def scores_from_out(out: Path, U: int, N: int, chunk: int = 1024):
    if (out / "scores_test.npy").exists():
        s = np.load(out / "scores_test.npy").astype(np.float32)
        assert s.shape == (U, N + 1), s.shape
        yield 0, s
        return
    uv = np.load(out / "user_test.npy").astype(np.float32)
    iv = np.load(out / "item.npy").astype(np.float32)
    assert uv.shape[0] == U, uv.shape
    assert iv.shape[0] == N + 1, iv.shape
    for a in range(0, U, chunk):
        u = uv[a : a + chunk]
        s = np.einsum("bkd,nd->bkn", u, iv).max(axis=1) if u.ndim == 3 else u @ iv.T
        yield a, s


def evaluate(U, N, train, val, test, score_chunks):
    # history mask (train + val)
    hist_u = np.concatenate([train[:, 0], val[:, 0]]) - 1
    hist_i = np.concatenate([train[:, 1], val[:, 1]])
    target = np.zeros(U, dtype=np.int64)
    target[test[:, 0] - 1] = test[:, 1]
    ranks = np.full(U, np.iinfo(np.int64).max, dtype=np.int64)
    for a, s in score_chunks:
        s = np.array(s, dtype=np.float64, copy=True)
        b = a + s.shape[0]
        s[:, 0] = -np.inf
        m = (hist_u >= a) & (hist_u < b)
        s[hist_u[m] - a, hist_i[m]] = -np.inf
        rows = np.arange(s.shape[0])
        t = s[rows, target[a:b]]
        # rank = number of items scoring strictly higher (ties resolved in the target's favour
        # would be optimistic; count ties against it except itself, pessimistic)
        higher = (s > t[:, None]).sum(1)
        ties = (s == t[:, None]).sum(1) - 1
        ranks[a:b] = higher + ties
        ranks[a:b][~np.isfinite(t)] = N  # target masked (should not happen)
    users = test[:, 0] - 1
    r = ranks[users]
    res = {
        "ndcg@10": float(np.where(r < 10, 1.0 / np.log2(r + 2), 0.0).mean()),
        "hr@10": float((r < 10).mean()),
        "hr@50": float((r < 50).mean()),
        "mrr@10": float(np.where(r < 10, 1.0 / (r + 1), 0.0).mean()),
        "n_users": len(r),
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("split", type=Path)
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument(
        "--mostpop", action="store_true", help="score MostPop (training-interaction counts)"
    )
    a = ap.parse_args()
    U, N, train, val, test = load_split(a.split)
    if a.mostpop:
        cnt = np.bincount(train[:, 1], minlength=N + 1).astype(np.float32)
        # tiny item-id tie-break so the ranking is deterministic (lower id first)
        cnt = cnt - np.arange(N + 1, dtype=np.float32) * 1e-6
        chunks = [(0, np.broadcast_to(cnt, (U, N + 1)))]
        res = evaluate(U, N, train, val, test, chunks)
        res["model"] = "MostPop"
    else:
        if a.out is None:
            ap.error("OUT is required unless --mostpop")
        res = evaluate(U, N, train, val, test, scores_from_out(a.out, U, N))
        info = a.out / "info.json"
        if info.exists():
            i = json.loads(info.read_text())
            res.update(
                {k: i.get(k) for k in ("library", "model", "epochs", "seconds_per_epoch", "error")}
            )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
