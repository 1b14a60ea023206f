"""Approximate retrieval: faiss HNSW and IVF (through ``rechub_core.index.FaissIndex``) and
Annoy (``--annoy-trees``, through the ``rechub_plugins_annoy`` plugin's index) against exact
search, on synthetic clustered item vectors.

    python -m benchmarks.retrieval [--n-items 1000000] [--dim 64] [--hnsw-m 32,16] \
        [--ef-search 64,128,256,512,1024] [--ivf-nlist 512,1024] [--nprobe 4,8,16,32,64] \
        [--budget-s 600]

Data (stated in the results): ``n_items`` vectors from a Gaussian mixture of ``--components``
equally likely components in ``dim`` dimensions: centre ``c ~ N(0, I)`` scaled to unit length,
point ``= c + sigma * N(0, I)`` (``--sigma``, per dimension), then L2-normalised; ``--queries``
queries are drawn from the same mixture with another seed (user vectors that look like item
vectors). Scores are inner products (= cosine).

Measured per index: build time (``FaissIndex.build``: faiss training + adding, plus the wrapper's
id checks), index size (bytes of the serialized faiss index; ids add 8 bytes per item),
recall@k against exact search (``|approx top-k ∩ exact top-k| / k``, averaged over queries) and
queries per second for one batch of all queries through ``FaissIndex.search`` (best of
``--repeats`` runs; the raw faiss call is reported too).

Exact baselines: faiss ``IndexFlatIP`` through the same wrapper (the reference for the speed-up
target), the numpy ``ExactIndex`` and a torch matmul + ``topk``. The ground truth is the torch
top-k of all queries (the cheapest exact search on this machine; its run is the torch timing);
``IndexFlatIP`` and ``ExactIndex`` are timed on the first ``--exact-subset`` queries (brute force
cost is linear in the number of queries) and their recall against the ground truth is shown as
a check. faiss and torch use ``--threads`` threads.

Search parameters of a built index are changed in place (``ef_search`` / ``nprobe`` and the
wrapper's private ``_apply_search_params``), so one build serves every setting. efSearch values
below k are raised to k by the wrapper (faiss HNSW needs efSearch >= k).

Configurations run in the given order; one whose build would not fit in ``--budget-s`` (an
estimate from the builds done so far) is skipped and listed as skipped.

Writes ``benchmarks/results/retrieval.json`` and ``retrieval.md`` (``--name`` changes the file
name, for a second run with other settings).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import fmt, machine, machine_line, publish


def mixture(
    n: int, dim: int, components: int, sigma: float, seed: int, centres_seed: int
) -> np.ndarray:
    """``(n, dim)`` float32 unit vectors from the Gaussian mixture described in the module doc."""
    crng = np.random.default_rng(centres_seed)
    centres = crng.standard_normal((components, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    step = 1 << 17
    for start in range(0, n, step):
        m = min(step, n - start)
        comp = rng.integers(0, components, size=m)
        x = centres[comp] + sigma * rng.standard_normal((m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over rows of ``|found[i] ∩ exact[i]| / k`` (``-1`` padding never matches)."""
    k = exact.shape[1]
    hits = 0
    for f, e in zip(found, exact, strict=True):
        hits += np.intersect1d(f[f >= 0], e, assume_unique=True).size
    return hits / (k * exact.shape[0])


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of ``repeats`` calls of ``fn`` (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def faiss_bytes(index: Any) -> int:
    """Serialized size of the faiss index inside a ``FaissIndex`` (private ``_index``)."""
    import faiss

    return int(faiss.serialize_index(index._index).nbytes)


def torch_topk(items: np.ndarray, queries: np.ndarray, k: int, chunk: int = 50) -> np.ndarray:
    """Exact top-k ids by a torch matmul + ``topk`` in query chunks of ``chunk``."""
    import torch

    x = torch.from_numpy(items)
    out = []
    with torch.no_grad():
        for start in range(0, queries.shape[0], chunk):
            q = torch.from_numpy(queries[start : start + chunk])
            out.append(torch.topk(q @ x.T, k, dim=1).indices.numpy())
    return np.concatenate(out)


def search_point(
    index: Any, queries: np.ndarray, exact_ids: np.ndarray, k: int, repeats: int
) -> dict[str, Any]:
    """Recall@k and QPS of one search setting (wrapper and raw faiss)."""
    import faiss  # noqa: F401  (the index is a faiss one)

    seconds, (ids, _scores) = best_time(lambda: index.search(queries, k), repeats)
    raw_seconds, _ = best_time(lambda: index._index.search(queries, k), repeats)
    return {
        "recall": recall_at_k(ids, exact_ids),
        "qps": queries.shape[0] / seconds,
        "qps_raw_faiss": queries.shape[0] / raw_seconds,
    }


def measure_exact(
    index: Any,
    items: np.ndarray,
    ids: np.ndarray,
    sub: np.ndarray,
    exact_ids: np.ndarray,
    k: int,
    repeats: int,
) -> dict[str, Any]:
    """Build an exact index and time it on the query subset ``sub`` (best of ``repeats``)."""
    t = time.perf_counter()
    index.build(items, ids)
    build_s = time.perf_counter() - t
    seconds, (found, _) = best_time(lambda: index.search(sub, k), repeats)
    out = {
        "build_s": build_s,
        "bytes": faiss_bytes(index) if hasattr(index, "_index") else int(items.nbytes),
        "qps": sub.shape[0] / seconds,
        "queries_timed": int(sub.shape[0]),
        "recall_vs_ground_truth": recall_at_k(found, exact_ids[: sub.shape[0]]),
    }
    if hasattr(index, "_index"):
        raw_s, _ = best_time(lambda: index._index.search(sub, k), 1)
        out["qps_raw_faiss"] = sub.shape[0] / raw_s
    return out


def annoy_points(
    args: argparse.Namespace,
    items: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    exact_ids: np.ndarray,
    flat_qps: float,
    fastest_exact: float,
    log: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Annoy (the ``rechub_plugins_annoy`` plugin, metric dot) for each ``--annoy-trees``,
    swept over ``--annoy-search-k``; bytes are the saved forest's (ids add 8 bytes per item)."""
    import tempfile

    from rechub_core.plugins import create

    k = args.k
    points, builds = [], []
    for n_trees in (int(v) for v in args.annoy_trees.split(",") if v):
        index = create("index", "annoy", n_trees=n_trees, metric="dot", n_jobs=args.threads)
        t = time.perf_counter()
        index.build(items, ids)
        build_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            index._annoy.save(f"{tmp}/forest.ann")
            size = os.path.getsize(f"{tmp}/forest.ann")
        builds.append({"kind": "annoy", "n_trees": n_trees, "build_s": build_s, "bytes": size})
        log(f"annoy {n_trees} trees: built in {build_s:.1f}s, {size / 2**20:.0f} MiB")
        for search_k in (int(v) for v in args.annoy_search_k.split(",") if v):
            index.search_k = search_k
            seconds, (found, _) = best_time(lambda idx=index: idx.search(queries, k), args.repeats)
            raw_s, _ = best_time(
                lambda f=index._annoy, sk=search_k: [
                    f.get_nns_by_vector(q, k, search_k=sk) for q in queries
                ],
                args.repeats,
            )
            qps = queries.shape[0] / seconds
            point = {
                "kind": "annoy",
                "n_trees": n_trees,
                "search_k": search_k,
                "recall": recall_at_k(found, exact_ids),
                "qps": qps,
                "qps_raw_faiss": queries.shape[0] / raw_s,  # raw backend: annoy itself
                "build_s": build_s,
                "bytes": size,
                "speedup_vs_faiss_flat": qps / flat_qps,
                "speedup_vs_fastest_exact": qps / fastest_exact,
            }
            points.append(point)
            log(f"  search_k {search_k}: recall {point['recall']:.4f}, {qps:.0f} QPS")
        del index
    return points, builds


def pareto(points: list[dict[str, Any]]) -> None:
    """Mark ``pareto=True`` on points no other point beats in both recall and QPS."""
    for p in points:
        p["pareto"] = not any(
            o is not p
            and o["recall"] >= p["recall"]
            and o["qps"] >= p["qps"]
            and (o["recall"] > p["recall"] or o["qps"] > p["qps"])
            for o in points
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement; returns the results payload."""
    import faiss
    import torch

    from rechub_core.index import ExactIndex, FaissIndex

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    k, n = args.k, args.n_items

    def log(msg: str) -> None:
        print(f"[retrieval {time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr)

    items = mixture(n, args.dim, args.components, args.sigma, seed=1, centres_seed=0)
    queries = mixture(args.queries, args.dim, args.components, args.sigma, 2, centres_seed=0)
    ids = np.arange(n, dtype=np.int64)
    log(f"data: {items.shape} items, {queries.shape} queries")

    exact: dict[str, Any] = {}
    # Ground truth: torch matmul + topk over all queries (also timed: the torch baseline).
    tt_s, exact_ids = best_time(lambda: torch_topk(items, queries, k), 1)
    exact["torch_matmul_topk"] = {
        "build_s": 0.0,
        "bytes": int(items.nbytes),
        "qps": args.queries / tt_s,
        "queries_timed": args.queries,
        "recall_vs_ground_truth": 1.0,
    }
    log(f"torch matmul + topk (ground truth): {exact['torch_matmul_topk']['qps']:.1f} QPS")

    sub = queries[: args.exact_subset]
    exact["faiss_flat"] = measure_exact(
        FaissIndex(kind="flat"), items, ids, sub, exact_ids, k, args.exact_repeats
    )
    log(f"faiss flat: {exact['faiss_flat']['qps']:.1f} QPS")
    exact["numpy_exact_index"] = measure_exact(ExactIndex(), items, ids, sub, exact_ids, k, 1)
    log(f"numpy ExactIndex: {exact['numpy_exact_index']['qps']:.1f} QPS")

    configs: list[tuple[str, dict[str, Any]]] = []
    hnsw_ms = [int(m) for m in args.hnsw_m.split(",") if m]
    nlists = [int(v) for v in args.ivf_nlist.split(",") if v]
    # interleave so a tight budget still gets one of each family first
    for i in range(max(len(hnsw_ms), len(nlists))):
        if i < len(hnsw_ms):
            configs.append(("hnsw", {"hnsw_m": hnsw_ms[i]}))
        if i < len(nlists):
            configs.append(("ivf", {"nlist": nlists[i]}))
    points: list[dict[str, Any]] = []
    builds: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    build_rate: dict[str, float] = {}  # seconds per unit of the family's cost model
    for kind, params in configs:
        cost = params.get("hnsw_m", 0) ** 0.5 if kind == "hnsw" else params.get("nlist", 0)
        elapsed = time.perf_counter() - t0
        if kind in build_rate:
            estimate = build_rate[kind] * cost * 1.3 + 30  # + the search sweep
            if elapsed + estimate > args.budget_s:
                skipped.append({"kind": kind, **params, "estimated_s": estimate})
                log(f"skip {kind} {params}: ~{estimate:.0f}s would pass the budget")
                continue
        index = FaissIndex(kind=kind, **params)
        t = time.perf_counter()
        index.build(items, ids)
        build_s = time.perf_counter() - t
        build_rate[kind] = build_s / max(cost, 1e-9)
        size = faiss_bytes(index)
        builds.append({"kind": kind, **params, "build_s": build_s, "bytes": size})
        log(f"{kind} {params}: built in {build_s:.1f}s, {size / 2**20:.0f} MiB")
        sweep = args.ef_search if kind == "hnsw" else args.nprobe
        for value in (int(v) for v in sweep.split(",") if v):
            if kind == "hnsw":
                index.ef_search = value
                setting = {"hnsw_m": params["hnsw_m"], "ef_search": value}
                setting["ef_search_used"] = max(value, k)
            else:
                index.nprobe = value
                setting = {"nlist": params["nlist"], "nprobe": value}
            index._apply_search_params()
            point = search_point(index, queries, exact_ids, k, args.repeats)
            point.update({"kind": kind, **setting, "build_s": build_s, "bytes": size})
            point["speedup_vs_faiss_flat"] = point["qps"] / exact["faiss_flat"]["qps"]
            point["speedup_vs_fastest_exact"] = point["qps"] / max(e["qps"] for e in exact.values())
            points.append(point)
            log(f"  {setting}: recall {point['recall']:.4f}, {point['qps']:.0f} QPS")
        del index
    if args.annoy_trees:
        fastest = max(e["qps"] for e in exact.values())
        annoy, annoy_builds = annoy_points(
            args, items, ids, queries, exact_ids, exact["faiss_flat"]["qps"], fastest, log
        )
        points += annoy
        builds += annoy_builds
    pareto(points)
    target = [
        p
        for p in points
        if p["kind"] == "hnsw" and p["recall"] >= 0.95 and p["speedup_vs_faiss_flat"] >= 10
    ]
    return {
        "data": {
            "n_items": n,
            "dim": args.dim,
            "components": args.components,
            "sigma": args.sigma,
            "queries": args.queries,
            "distribution": (
                "Gaussian mixture, equal weights; centre ~ N(0, I) scaled to unit length; point "
                "= centre + sigma * N(0, I), L2-normalised; queries from the same mixture "
                "(other seed)"
            ),
        },
        "k": k,
        "threads": args.threads,
        "exact": exact,
        "builds": builds,
        "points": points,
        "skipped": skipped,
        "target": {
            "rule": "HNSW recall@50 >= 0.95 at >= 10x faiss IndexFlatIP QPS",
            "reached": bool(target),
            "meeting_points": [
                {key: p[key] for key in ("hnsw_m", "ef_search", "recall", "qps")} for p in target
            ],
        },
        "total_s": time.perf_counter() - t0,
    }


def markdown(res: dict[str, Any], command: str, info: dict[str, Any]) -> str:
    """The results tables."""
    d = res["data"]
    k = res["k"]
    flat_qps = res["exact"]["faiss_flat"]["qps"]
    annoy = " / Annoy" if any(p["kind"] == "annoy" for p in res["points"]) else ""
    lines = [
        f"# Retrieval: faiss HNSW / IVF{annoy} vs exact search ({d['n_items']:,} x {d['dim']})",
        "",
        f"Command: `{command}`  ",
        machine_line(info),
        "",
        f"Data: {d['n_items']:,} item vectors, dim {d['dim']}: {d['distribution']}; "
        f"{d['components']} components, sigma {d['sigma']} per dimension. {d['queries']:,} "
        f"queries in one batch, k = {k}, {res['threads']} threads (faiss OpenMP and torch). "
        f"QPS: best of the repeats, through `FaissIndex.search` (the serving path); raw "
        f"faiss in its own column. Recall@{k} against the exact top-{k} of a torch matmul + "
        f"`topk` over all queries (checked against `IndexFlatIP` on the timed subset).",
        "",
        "## Exact baselines",
        "",
        "| method | build s | bytes | QPS | queries timed | recall vs ground truth |",
        "|---|---|---|---|---|---|",
    ]
    for name, e in res["exact"].items():
        lines.append(
            f"| {name} | {e['build_s']:.2f} | {e['bytes']:,} | {e['qps']:.1f} | "
            f"{e['queries_timed']} | {fmt(e.get('recall_vs_ground_truth'), 4)} |"
        )
    lines += [
        "",
        f"## Approximate indexes (Pareto points in bold; speed-up vs IndexFlatIP "
        f"{flat_qps:.1f} QPS)",
        "",
        f"| index | M / nlist / trees | efSearch / nprobe / search_k | recall@{k} | QPS | QPS raw "
        "backend | speed-up "
        "| speed-up vs fastest exact | build s | bytes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in res["points"]:
        b = "**" if p["pareto"] else ""
        if p["kind"] == "hnsw":
            a, s = p["hnsw_m"], f"{p['ef_search']} (used {p['ef_search_used']})"
        elif p["kind"] == "annoy":
            a, s = (
                p["n_trees"],
                str(p["search_k"]) + (" (n_trees x k)" if p["search_k"] < 0 else ""),
            )
        else:
            a, s = p["nlist"], str(p["nprobe"])
        lines.append(
            f"| {b}{p['kind']}{b} | {a} | {s} | {b}{p['recall']:.4f}{b} | {b}{p['qps']:,.0f}{b} "
            f"| {p['qps_raw_faiss']:,.0f} | {p['speedup_vs_faiss_flat']:.1f}x | "
            f"{p['speedup_vs_fastest_exact']:.1f}x | {p['build_s']:.1f} | {p['bytes']:,} |"
        )
    t = res["target"]
    lines += [
        "",
        f"Target ({t['rule']}): **{'reached' if t['reached'] else 'not reached'}**"
        + (
            " by "
            + "; ".join(
                f"M={m['hnsw_m']} efSearch={m['ef_search']} (recall {m['recall']:.4f}, "
                f"{m['qps']:,.0f} QPS)"
                for m in t["meeting_points"]
            )
            if t["reached"]
            else ""
        ),
    ]
    if res["skipped"]:
        lines += [
            "",
            "Skipped (would not fit the time budget): "
            + "; ".join(
                f"{s['kind']} {s.get('hnsw_m', s.get('nlist'))} (~{s['estimated_s']:.0f} s)"
                for s in res["skipped"]
            ),
        ]
    lines += ["", f"Total benchmark time: {res['total_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n-items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--components", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=0.1)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hnsw-m", default="32,16")
    ap.add_argument("--ef-search", default="64,128,256,512,1024")
    ap.add_argument("--ivf-nlist", default="512,1024")
    ap.add_argument("--nprobe", default="4,8,16,32,64")
    ap.add_argument("--annoy-trees", default="", help="Annoy forests to build, e.g. 50,100")
    ap.add_argument("--annoy-search-k", default="-1,20000,100000", help="Annoy search_k sweep")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per setting (best)")
    ap.add_argument("--exact-repeats", type=int, default=2)
    ap.add_argument("--exact-subset", type=int, default=200)
    ap.add_argument("--budget-s", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--name", default="retrieval", help="results file name (NAME.json, NAME.md)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    info = machine()
    res = run(args)
    print(publish(args.name, "benchmarks.retrieval", argv, info, res, markdown, args.out))


if __name__ == "__main__":
    main()
