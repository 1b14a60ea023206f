"""Scale benchmarks: data-parallel training speed, and a 1M-item catalogue end to end.

    python -m benchmarks.scale ddp [--out benchmarks/results] [--users 4000 --items 2000 ...]
    python -m benchmarks.scale catalogue [--out benchmarks/results] [--items 1000000 \
        --interactions 10000000 --epoch-fraction 0.005]

``ddp`` trains the same model on the same synthetic data with the same global batch through
``rechub train`` in 1 process and in 2 processes (``--nproc 2``: torchrun, gloo, each rank
half of every global batch), with and without in-batch negatives gathered across ranks, and
reports training samples/s (positives per second over all ranks, from ``metrics.json``).
Writes ``OUT/ddp.json`` and ``OUT/ddp.md``.

``catalogue`` generates a synthetic catalogue of 1M items and 10M interactions and reports the
time and peak memory (RSS sampled every 20 ms) of data preparation, one training epoch (a
documented fraction of it, extrapolated), item inference, and the streamed index builds (one
faiss index, 4 shards, IVF in 4 shards) next to the previous whole-matrix build. Writes
``OUT/scale.json`` and ``OUT/scale.md``.

``toys`` times a default ``rechub train`` epoch on Toys_and_Games, this code against an old
checkout, interleaved in one run. ``--threads 0`` leaves the thread count to each code's
default; ``--background N`` runs N CPU-bound jobs of ``--background-threads`` threads beside
every run (started
``--background-warmup`` seconds before the first, so that the load average the auto thread
rule reads has seen them): the issue's "next to one other job". Writes ``OUT/NAME.json`` and
``OUT/NAME.md`` (``--name``; the default ``scale_toys`` goes into ``OUT/scale.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import cpu_capability, machine_busy

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20


#: what the machine line says when the 1-minute load at the start was at least the core count
SHARED = "(other jobs were running)"


def _machine() -> str:
    loads = os.getloadavg()
    load = ", ".join(f"{x:.1f}" for x in loads)
    shared = f" {SHARED}" if machine_busy(loads[0]) else ""
    return (
        f"{platform.machine()} ({cpu_capability()}), {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, "
        f"torch {torch.__version__}; load average at the start {load}{shared}; measured "
        f"{time.strftime('%Y-%m-%d')}"
    )


def _command(argv: list[str]) -> str:
    return "python -m benchmarks.scale " + " ".join(argv)


# --------------------------------------------------------------------------- ddp


DDP_CONFIG = """
[model]
name = "{model}"
[data]
source = "synthetic"
synthetic_users = {users}
synthetic_items = {items}
max_len = 50
[train]
epochs = {epochs}
batch_size = {batch_size}
seed = 2022
gather_negatives = {gather}
"""


def _ddp_case(
    args: argparse.Namespace, work: Path, nproc: int, gather: bool, threads: int | None
) -> dict[str, Any]:
    name = f"n{nproc}-{'gather' if gather else 'local'}-t{threads or 'default'}"
    config = work / f"{name}.toml"
    config.write_text(
        DDP_CONFIG.format(
            model=args.model,
            users=args.users,
            items=args.items,
            epochs=args.epochs,
            batch_size=args.batch_size,
            gather="true" if gather else "false",
        )
    )
    out = work / name
    cmd = [sys.executable, "-m", "rechub_core.cli", "train", str(config), "--out", str(out)]
    cmd += ["--quiet"] + (["--nproc", str(nproc)] if nproc > 1 else [])
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["history"]
    steady = history[1:] or history  # epoch 0 includes warm-up (DDP's first static-graph step)
    return {
        "processes": nproc,
        "threads_per_process": threads or torch.get_num_threads(),
        "gather_negatives": gather,
        "samples_per_s": float(np.mean([h["samples_per_s"] for h in steady])),
        "epoch_s": float(np.mean([h["seconds"] for h in steady])),
        "epochs": len(history),
        "final_loss": history[-1]["loss"],
        "test_ndcg@10": metrics["test"]["ndcg@10"],
        "wall_s": wall,
    }


def run_ddp(args: argparse.Namespace, argv: list[str]) -> None:
    # (processes, gather negatives, OMP threads per process; None = torch's default)
    cases = [(1, False, 1), (1, False, None), (2, False, 1), (2, True, 1)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rechub-ddp-") as tmp:
        for nproc, gather, threads in cases:
            row = _ddp_case(args, Path(tmp), nproc, gather, threads)
            print(json.dumps(row), flush=True)
            rows.append(row)
    base = rows[0]["samples_per_s"]
    for row in rows:
        row["speedup_vs_1_process"] = row["samples_per_s"] / base
    result = {
        "command": _command(argv),
        "machine": _machine(),
        "settings": vars(args) | {"func": None},
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ddp.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Data-parallel training (DDP, gloo on CPU) vs one process",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}",
        "",
        f"{args.model} on synthetic data ({args.users} users, {args.items} items), global batch "
        f"{args.batch_size} (each of 2 ranks: {args.batch_size // 2} rows per step from its own "
        f"shard), {args.epochs} epochs through `rechub train` (`--nproc 2` starts torchrun). "
        "samples/s = training positives per second over all ranks, mean of the epochs after "
        "the first.",
        "",
        "| processes | threads each | in-batch negatives | samples/s | speed-up | s/epoch "
        "| final loss | test NDCG@10 | wall s (incl. start-up, eval) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['processes']} | {r['threads_per_process']} | "
            f"{'gathered from both ranks' if r['gather_negatives'] else 'own rank'} | "
            f"{r['samples_per_s']:,.0f} | {r['speedup_vs_1_process']:.2f} | {r['epoch_s']:.1f} | "
            f"{r['final_loss']:.3f} | {r['test_ndcg@10']:.4f} | {r['wall_s']:.0f} |"
        )
    lines += [
        "",
        "Speed-up is relative to the first row (one process, one thread). Two processes on a "
        "2-core machine use the same two cores that one process with two threads would, and "
        "add a gloo all-reduce of every gradient (embedding tables included) per step; any "
        "gain here comes from using the second core better than intra-op threads do, the real "
        "point of DDP being more cores or machines. Gathering negatives adds two all-gathers "
        "and one all-reduce per step and makes each rank's softmax as wide as the global "
        "batch, i.e. the same objective as one process on the global batch (same final loss "
        "as row 1, up to float rounding). The machine was shared with other jobs (load average "
        "above): that penalises a process running two OpenMP threads, which wait for each "
        "other at every parallel region, far more than single-threaded processes.",
        "",
    ]
    (out / "ddp.md").write_text("\n".join(lines))


# --------------------------------------------------------------------------- catalogue


class RssMonitor:
    """Samples this process's resident set size every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        """Current RSS in bytes."""
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    @contextlib.contextmanager
    def phase(self, name: str, table: list[dict[str, Any]], **extra: Any) -> Iterator[None]:
        """Time a phase and record its peak RSS and its peak above the RSS at its start."""
        start_rss = self.rss()
        self.peak = start_rss
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        peak = max(self.peak, self.rss())
        row = {
            "phase": name,
            "seconds": seconds,
            "peak_rss_mib": peak / MIB,
            "peak_above_start_mib": (peak - start_rss) / MIB,
            **extra,
        }
        table.append(row)
        print(json.dumps(row), flush=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def big_interactions(
    n_items: int, n_events: int, min_len: int, max_len: int, n_categories: int, seed: int = 0
) -> Any:
    """Exactly ``n_events`` interactions over exactly ``n_items`` items, vectorised: users with
    ``min_len..max_len`` events, items drawn by a Zipf-like popularity (``1 / (rank + 10) **
    0.8``), then the items no draw reached put on random events, so every catalogue item
    occurs; increasing timestamps; a 10-value user segment and ``n_categories`` item
    categories as side features. (The core's ``synthetic_interactions`` plants structure with
    a random walk per user, which at this size takes minutes and leaves ~20% of the items
    unseen.)"""
    import pandas as pd

    from rechub_core.datasets import Interactions

    rng = np.random.default_rng(seed)
    n_users = int(np.ceil(n_events / ((min_len + max_len) / 2) * 1.01))
    lengths = rng.integers(min_len, max_len + 1, size=n_users)
    users = np.repeat(np.arange(1, n_users + 1), lengths)[:n_events]  # the last user is cut
    n_users = int(users[-1])
    if int((users == n_users).sum()) < min_len:  # too short to keep: merge into the previous
        users[users == n_users] = n_users - 1
        n_users -= 1
    weight = 1.0 / (np.arange(n_items) + 10.0) ** 0.8
    cdf = np.cumsum(weight / weight.sum())
    by_rank = rng.permutation(n_items) + 1  # item id of each popularity rank
    items = by_rank[np.minimum(np.searchsorted(cdf, rng.random(n_events)), n_items - 1)]
    while True:  # overwriting an item's only event makes it missing in turn: repeat
        missing = np.flatnonzero(np.bincount(items, minlength=n_items + 1)[1:] == 0) + 1
        if not len(missing):
            break
        items[rng.choice(n_events, size=len(missing), replace=False)] = missing
    timestamps = 1_000_000_000 + np.cumsum(rng.integers(1, 3600, size=n_events))
    events = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": timestamps})
    user_table = pd.DataFrame(
        {"segment": rng.integers(0, 10, size=n_users)},
        index=pd.Index(np.arange(1, n_users + 1), name="user_id"),
    )
    item_table = pd.DataFrame(
        {"category": rng.integers(0, n_categories, size=n_items)},
        index=pd.Index(np.arange(1, n_items + 1), name="item_id"),
    )
    return Interactions(events=events, users=user_table, items=item_table, name="scale")


def run_catalogue(args: argparse.Namespace, argv: list[str]) -> None:
    import attrs

    from rechub_core.config import ComponentConfig, RunConfig
    from rechub_core.data import loaders_from_prepared
    from rechub_core.index import FaissIndex, load_index
    from rechub_core.plugins import get_spec
    from rechub_core.preprocess import prepare
    from rechub_core.runs import build_index, build_model, build_trainer, default_settings
    from rechub_core.schema import DataSchema

    machine = _machine()
    rows: list[dict[str, Any]] = []
    mon = RssMonitor()
    work = Path(tempfile.mkdtemp(prefix="rechub-scale-"))
    try:
        with mon.phase("synthetic interactions (benchmark's own generator)", rows):
            inter = big_interactions(
                args.items, args.interactions, args.min_len, args.max_len_seq, args.categories
            )
        n_events = len(inter.events)
        n_users = int(inter.users.shape[0])
        with mon.phase("data preparation (prepare: protocol, ids, histories)", rows):
            data = prepare(inter, max_len=args.max_len)
        del inter
        n_train = len(data.train["item_id"])
        schema = DataSchema.from_prepared(data)
        spec = get_spec("model", args.model)
        settings = default_settings(spec, epochs=1)
        if args.batch_size:
            settings = attrs.evolve(settings, batch_size=args.batch_size)
        args.batch_size = settings.batch_size
        torch.manual_seed(0)
        model = build_model(spec, schema, {})
        dim = int(model.item_id_feature.embed_dim)
        args.dim = dim
        train, _, _ = loaders_from_prepared(data, batch_size=args.batch_size, seed=0)
        n_rows = max(args.batch_size, int(n_train * args.epoch_fraction))
        take = torch.randperm(n_train, generator=torch.Generator().manual_seed(0))[:n_rows]
        full_tensors = train.tensors
        train.tensors = {k: v[take] for k, v in full_tensors.items()}
        train.n_rows = n_rows
        trainer = build_trainer(
            model, settings, work / "run", verbose=False, threads=args.threads or "auto"
        )
        args.optimizer = type(trainer.optimizer).__name__
        args.threads_used = torch.get_num_threads()
        steps = len(train)
        with mon.phase(
            f"training: {args.epoch_fraction:.1%} of one epoch", rows, steps=steps, rows=n_rows
        ):
            history = trainer.fit(train)
        args.sampler_choice = getattr(trainer.sampler, "choice", settings.sampler)  # bound now
        epoch_s = history[0]["seconds"]
        rows[-1]["samples_per_s"] = history[0]["samples_per_s"]
        rows[-1]["loop_seconds"] = epoch_s
        full_steps = -(-n_train // args.batch_size)
        rows.append(
            {
                "phase": "training: one full epoch, extrapolated",
                "seconds": epoch_s * full_steps / steps,
                "steps": full_steps,
                "rows": n_train,
                "extrapolated": True,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        train.tensors = full_tensors
        del full_tensors
        n_items = train.n_items - 1
        with mon.phase(f"item inference ({n_items:,} vectors, 65,536 per batch, dropped)", rows):
            n_vec = sum(int(v.shape[0]) for _, v in trainer.iter_item_vectors(train, 65_536, 1))
        assert n_vec == n_items
        index_cases: list[tuple[str, dict[str, Any]]] = [
            ("flat", {"kind": "flat"}),
            ("flat, 4 shards", {"kind": "flat", "shards": 4}),
            ("ivf nlist=1024 nprobe=32, 4 shards", {"kind": "ivf", "nlist": 1024, "nprobe": 32}),
        ]
        index_cases[2][1]["shards"] = 4  # nlist is per shard
        rng = np.random.default_rng(1)
        queries = rng.standard_normal((1000, dim)).astype(np.float32)
        for label, params in index_cases:
            cfg = RunConfig(model=ComponentConfig("x"), index=ComponentConfig("faiss", params))
            out = work / label.replace(" ", "_").replace(",", "")
            out.mkdir()
            with mon.phase(f"inference + streamed index build + save: {label}", rows):
                build_index(trainer, train, cfg, out)
            rows[-1]["file_mib"] = (out / "index.npz").stat().st_size / MIB
            start = time.perf_counter()
            index = load_index(out / "index.npz")
            rows[-1]["load_s"] = time.perf_counter() - start
            start = time.perf_counter()
            index.search(queries, 50)
            rows[-1]["search_1000_queries_top50_s"] = time.perf_counter() - start
            del index
            shutil.rmtree(out)
        import faiss

        with mon.phase(
            "previous path: all vectors, FaissIndex.build, serialize_index + np.savez (flat)",
            rows,
        ):
            vectors = trainer.all_item_vectors(train).numpy().astype(np.float32)
            ids = np.arange(1, vectors.shape[0], dtype=np.int64)
            flat = FaissIndex("flat")
            flat.build(vectors[1:], ids)
            del vectors
            np.savez(work / "previous.npz", ids=ids, faiss_index=faiss.serialize_index(flat._index))
            del flat
    finally:
        mon.stop()
        shutil.rmtree(work, ignore_errors=True)
    import resource

    result = {
        "command": _command(argv),
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
        "data": {
            "items": n_items,
            "users": n_users,
            "interactions": n_events,
            "training_rows": n_train,
            "max_len": args.max_len,
        },
        "rows": rows,
        "process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    _write_scale_md(out_dir)


def _catalogue_markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    d = result["data"]
    lines = [
        "# A large catalogue on one 2-core machine",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}",
        "",
        f"Synthetic data (the benchmark's own vectorised generator: Zipf-like popularity, every "
        f"item occurs): {d['items']:,} items, {d['users']:,} users, {d['interactions']:,} "
        f"interactions ({d['training_rows']:,} training rows, histories of {d['max_len']}). "
        f"Model: `{args.model}` as `rechub train --model {args.model}` builds and trains it "
        f"(its `train_defaults`): {args.dim}-d embeddings, sampler `auto` -> "
        f"{getattr(args, 'sampler_choice', '?')} softmax (512 shared uniform negatives above "
        "5,000 items; 25,000 for the sequential models), optimizer "
        f"{getattr(args, 'optimizer', '?')} (row-wise lazy Adam with "
        "sparse gradients for tables of >= 50,000 rows), batch "
        f"{args.batch_size}, {getattr(args, 'threads_used', '?')} thread(s). Memory is the "
        "process's RSS sampled every 20 ms: the peak during the phase, and that peak minus the "
        "RSS at the "
        "phase's start (what the phase itself added).",
        "",
        "| phase | seconds | peak RSS MiB | added MiB | notes |",
        "|---|---|---|---|---|",
    ]
    measured_steps = {r.get("steps") for r in result["rows"] if not r.get("extrapolated")}
    for r in result["rows"]:
        if r.get("extrapolated") and r.get("steps") in measured_steps:
            continue  # the whole epoch was measured: nothing to extrapolate
        notes = []
        if r.get("extrapolated"):
            notes.append(
                f"**extrapolated**: {r['steps']:,} steps x the measured seconds per step of the "
                "row above; not measured"
            )
        if "steps" in r and not r.get("extrapolated"):
            notes.append(
                f"measured: {r['steps']:,} steps on {r['rows']:,} random training rows, "
                f"{r['samples_per_s']:,.0f} samples/s"
            )
        if "file_mib" in r:
            notes.append(
                f"index file {r['file_mib']:,.0f} MiB; load_index {r['load_s']:.1f} s; 1,000 "
                f"queries top-50 {r['search_1000_queries_top50_s']:.2f} s"
            )
        peak = f"{r['peak_rss_mib']:,.0f}" if "peak_rss_mib" in r else "-"
        added = f"{r['peak_above_start_mib']:,.0f}" if "peak_above_start_mib" in r else "-"
        lines.append(
            f"| {r['phase']} | {r['seconds']:,.1f} | {peak} | {added} | {'; '.join(notes)} |"
        )
    by_phase = {r["phase"]: r for r in result["rows"]}
    streamed = next((r for p, r in by_phase.items() if p.endswith("save: flat")), None)
    previous = next((r for p, r in by_phase.items() if p.startswith("previous path")), None)
    top = max(result["rows"], key=lambda r: r.get("peak_rss_mib", 0))
    lines += [
        "",
        f"Whole process peak RSS: {result['process_peak_rss_mib']:,.0f} MiB (highest sampled "
        f"during: {top['phase']})."
        + (
            " The machine was shared with other jobs (load average above), which slows every phase."
            if SHARED in result["machine"]
            else ""
        ),
        "",
        "- Training: a step reads and writes only the embedding rows its batch touched (sparse "
        "gradients, row-wise Adam) and scores 512 shared negatives, so seconds per step no "
        "longer grow with the catalogue (before: dense (1M, D) gradients and Adam over every "
        "row, 3.3 s a step, ~7.7 h an epoch). An epoch trained on a fraction of the rows is "
        "extrapolated, as marked; with `--epoch-fraction 1.0` the whole epoch is measured.",
        "- Data-parallel (`--nproc 2`, gloo): the tables keep sparse gradients (gloo "
        "all-reduces them; tested equal to one process in tests/test_sparse.py); measured "
        "against one process in the section below.",
    ]
    if streamed and previous:
        lines.append(
            f"- Index: streaming the vectors into faiss and the index into its file added "
            f"{streamed['peak_above_start_mib']:,.0f} MiB (about the index itself) where the "
            f"previous path (every vector in one matrix, a float32 copy, the index, then a "
            f"serialised copy for np.savez) added {previous['peak_above_start_mib']:,.0f} MiB."
        )
    lines += [
        "- Search: flat indexes scan all items per query (exact); IVF visits 32 of 1,024 "
        "lists per shard.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- toys

TOYS = ROOT.parent / "shared" / "data" / "amazon-s3rec" / "Toys_and_Games.txt"


#: what one ``--background`` job runs: matrix products on ``{threads}`` threads, as a training
#: with that many would (tanh keeps the values bounded)
BACKGROUND_JOB = (
    "import torch\n"
    "torch.set_num_threads({threads})\n"
    "a = torch.randn(384, 384)\n"
    "while True:\n"
    "    a = torch.tanh(a @ a)\n"
)


@contextlib.contextmanager
def _background_jobs(
    count: int, warmup_s: float, threads: int = 1
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run ``count`` CPU-bound processes of ``threads`` threads each (:data:`BACKGROUND_JOB`)
    for the body (yields them); wait ``warmup_s`` seconds first so that the 1-minute load
    average has risen to them. They are killed when the body ends, however it ends."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    code = BACKGROUND_JOB.format(threads=threads)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(count)]
    try:
        if procs:
            time.sleep(warmup_s)
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run_toys(args: argparse.Namespace, argv: list[str]) -> None:
    """Epoch times of ``rechub train --model M`` on Toys_and_Games, this code against an old
    checkout (``--old-root``), interleaved in one run (old, new, old, new ...) so that both
    see the same machine load; each run in its own process (``benchmarks/scale_worker.py``)."""
    machine = _machine()
    work = Path(tempfile.mkdtemp(prefix="rechub-toys-"))
    csv = work / "Toys_and_Games.csv"
    from rechub_core.datasets import load_sequence_file

    load_sequence_file(args.data).events.to_csv(csv, index=False)  # the old code reads CSV
    runs: list[dict[str, Any]] = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if not args.threads:  # each code's own default: nothing may pin it
        env.pop("OMP_NUM_THREADS")
    try:
        with _background_jobs(args.background, args.background_warmup, args.background_threads):
            for model in args.models.split(","):
                for code in ("old", "new") if args.old_root else ("new",):
                    out = work / f"{model}-{code}.json"
                    cmd = [
                        sys.executable,
                        str(ROOT / "benchmarks" / "scale_worker.py"),
                        "--code",
                        code,
                        "--model",
                        model,
                        "--data",
                        str(csv if code == "old" else args.data),
                        "--epochs",
                        str(args.epochs),
                        "--threads",
                        str(args.threads),
                        "--out",
                        str(out),
                    ]
                    if code == "old":
                        cmd += ["--old-root", str(args.old_root)]
                    load_before = os.getloadavg()
                    subprocess.run(cmd, check=True, env=env, timeout=args.timeout)
                    result = json.loads(out.read_text())
                    result["load_before"] = load_before
                    runs.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result_all = {
        "command": _command(argv),
        "machine": machine,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"
        },
        "runs": runs,
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{args.name}.json").write_text(json.dumps(result_all, indent=2) + "\n")
    if args.name == "scale_toys":
        _write_scale_md(out_dir)
    else:
        (out_dir / f"{args.name}.md").write_text(_toys_markdown(result_all, _toys_title(args)))


def _toys_title(args: argparse.Namespace) -> str:
    """The section title of a ``toys`` run other than the default one."""
    threads = f"{args.threads} thread(s)" if args.threads else "each code's default threads"
    beside = (
        f", next to {args.background} {args.background_threads}-thread job(s)"
        if args.background
        else ""
    )
    return f"## Toys_and_Games (11,924 items): old code vs new, {threads}{beside}"


def _toys_threads(settings: dict[str, Any]) -> str:
    """How a ``toys`` run set its threads and what ran beside it, for the section's text."""
    if settings["threads"]:
        text = f"{settings['threads']} thread(s)"
    else:
        text = (
            "each code's default thread count, as `rechub train` without `--threads` picks it "
            "(the old code: torch's, one per core; the new: the auto rule of "
            "`rechub_core.threads`, from the cores and the 1-minute load), shown per row"
        )
    jobs = settings.get("background", 0)
    if jobs:
        text += (
            f", next to {jobs} CPU-bound job(s) of {settings.get('background_threads', 1)} "
            "thread(s) each (`scale.BACKGROUND_JOB`, started "
            f"{settings['background_warmup']:.0f} s before the first run and kept running "
            "through every run)"
        )
    return text


def _toys_markdown(result: dict[str, Any], title: str = "") -> str:
    lines = [
        title
        or "## Toys_and_Games (11,924 items): a default `rechub train` epoch, old code vs new",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}",
        "",
        "Each row is one process training the model with its `train_defaults` (as `rechub "
        "train --model NAME --data Toys_and_Games.txt --epochs E` trains it; the old code "
        "reads the same interactions as CSV), validation every epoch, "
        f"{_toys_threads(result['settings'])}, old and new runs interleaved. `train s` is "
        "the trainer's epoch clock (batches, sampling, forward, backward, optimizer); `fit s / "
        "epoch` adds validation (full ranking of all 19,412 users) and the checkpoint. Load: "
        "the 1-minute load average before and after the run (it counts everything running on "
        "the 2 cores, the background jobs included).",
        "",
        "| model | code | sampler | train s / epoch | fit s / epoch | positives/s | val NDCG@10 "
        "(last epoch) | load before / after |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def threads(run: dict[str, Any]) -> str:
        return "" if result["settings"]["threads"] else f", {run['threads']} thread(s)"

    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for r in result["runs"]:
        by_model.setdefault(r["model"], {})[r["code"]] = r
        train = sum(r["train_epoch_s"]) / len(r["train_epoch_s"])
        rate = sum(r["positives_per_s"]) / len(r["positives_per_s"])
        lines.append(
            f"| {r['model']} | {r['code']} ({Path(r['code_root']).name}){threads(r)} | "
            f"{r['sampler']} | "
            f"{train:.1f} | {r['fit_s'] / r['epochs']:.1f} | {rate:,.0f} | "
            f"{r['val_ndcg@10'][-1]:.4f} | {r['load_before'][0]:.1f} / {r['load_avg'][0]:.1f} |"
        )
    lines.append("")
    for model, pair in by_model.items():
        if "old" in pair and "new" in pair:
            old, new = pair["old"], pair["new"]
            ratio_t = sum(old["train_epoch_s"]) / sum(new["train_epoch_s"])
            ratio_f = (old["fit_s"] / old["epochs"]) / (new["fit_s"] / new["epochs"])
            lines.append(
                f"- {model}: new/old speed-up {ratio_t:.1f}x per training epoch, "
                f"{ratio_f:.1f}x per epoch with validation."
            )
    lines += [f"- Note (added by hand): {note}" for note in result.get("notes", [])]
    quality = result.get("quality", [])
    if quality:
        lines += [
            "",
            "Quality, 15 epochs at most with early-stopping patience 3 (`scale_worker.py "
            "--epochs 15 --patience 3`, one run each, 1 thread):",
            "",
            "| model | code | epochs | best epoch | best val NDCG@10 | test NDCG@10 | fit s |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {q['model']} | {q['label']} | {q['epochs']} | {q['best_epoch']} | "
            f"{max(q['val_ndcg@10']):.4f} | {q['test_ndcg@10']:.4f} | {q['fit_s']:.0f} |"
            for q in quality
        ]
    lines.append("")
    return "\n".join(lines)


def _ddp_reading(runs: list[dict[str, Any]]) -> str:
    """What the 1M-item DDP rows say, by their speed-up and the load they ran at."""
    by_world = {r["world"]: r for r in runs}
    if 1 not in by_world or 2 not in by_world:
        return ""
    ratio = by_world[2]["positives_per_s"] / by_world[1]["positives_per_s"]
    where = (
        "two processes on 2 cores already busy with other jobs"
        if any(machine_busy(r["load"][0]) for r in runs)
        else "nothing else running: the two processes have a core each"
    )
    verdict = "slower" if ratio < 1 else "faster"
    return (
        f"Two processes are {verdict} here ({ratio:.2f}x the positives/s of one; {where}): "
        "a step's sparse gradients are all-reduced by gloo, which gathers them."
    )


def _write_scale_md(out_dir: Path) -> None:
    """scale.md from scale.json (the 1M catalogue) and scale_toys.json (Toys), when present."""
    parts = []
    toys = out_dir / "scale_toys.json"
    cat = out_dir / "scale.json"
    if cat.exists():
        result = json.loads(cat.read_text())
        parts.append(_catalogue_markdown(result, argparse.Namespace(**result["settings"])))
    if toys.exists():
        parts.append(_toys_markdown(json.loads(toys.read_text())))
    ddp = out_dir / "scale_ddp1m.json"
    if ddp.exists():
        result = json.loads(ddp.read_text())
        rows = [
            f"| {r['world']} | {r['steps']} | {r['seconds']:.1f} | {r['positives_per_s']:,.0f} | "
            f"{r['optimizer']}, sparse tables {r['sparse_tables']} | {r['load'][0]:.1f} |"
            for r in result["runs"]
        ]
        parts.append(
            "\n".join(
                [
                    "## 1M items: one process against two (DDP, gloo)",
                    "",
                    f"Command: `{result['command']}`. YoutubeDNN by its `train_defaults`, the "
                    "same global batch (512; 256 per rank) and rows, 1 thread per process.",
                    "",
                    "| processes | steps | seconds | positives/s | optimizer | load |",
                    "|---|---|---|---|---|---|",
                    *rows,
                    "",
                    _ddp_reading(result["runs"]),
                    "",
                ]
            )
        )
    sampled = out_dir / "scale_toys_sampled.json"
    if sampled.exists():  # the same benchmark while the auto rule sampled above 5,000 items
        result = json.loads(sampled.read_text())
        title = (
            "## Toys_and_Games with the sampled softmax (512 shared uniform negatives): the same "
            f"benchmark at commit {result.get('commit', 'c7d97dd')}, when the auto rule sampled "
            "above 5,000 items"
        )
        parts.append(_toys_markdown(result, title))
    (out_dir / "scale.md").write_text("\n".join(parts))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    ddp = sub.add_parser("ddp", help="samples/s of 1 vs 2 processes (same data, global batch)")
    ddp.add_argument("--model", default="YoutubeSBC")
    ddp.add_argument("--users", type=int, default=4000)
    ddp.add_argument("--items", type=int, default=2000)
    ddp.add_argument("--epochs", type=int, default=2)
    ddp.add_argument("--batch-size", type=int, default=1024)
    ddp.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ddp.set_defaults(func=run_ddp)
    cat = sub.add_parser("catalogue", help="1M items, 10M interactions: time and memory")
    cat.add_argument("--items", type=int, default=1_000_000)
    cat.add_argument("--interactions", type=int, default=10_000_000)
    cat.add_argument("--categories", type=int, default=1000, help="item categories")
    cat.add_argument("--min-len", type=int, default=20, help="interactions per user, min")
    cat.add_argument("--max-len-seq", type=int, default=30, help="interactions per user, max")
    cat.add_argument("--max-len", type=int, default=20, help="history length L")
    cat.add_argument("--model", default="YoutubeDNN", help="trained with its train_defaults")
    cat.add_argument("--batch-size", type=int, default=0, help="0: the model's default")
    cat.add_argument("--threads", type=int, default=0, help="0: auto (rechub_core.threads)")
    cat.add_argument(
        "--epoch-fraction",
        type=float,
        default=0.005,
        help="train on this random fraction of the rows and extrapolate the epoch",
    )
    cat.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    cat.set_defaults(func=run_catalogue)
    toys = sub.add_parser("toys", help="Toys_and_Games epoch times, this code vs an old one")
    toys.add_argument("--models", default="SASRec,DSSM")
    toys.add_argument("--data", type=Path, default=TOYS)
    toys.add_argument("--epochs", type=int, default=2)
    toys.add_argument(
        "--threads", type=int, default=1, help="0: each code's default (torch's / the auto rule)"
    )
    toys.add_argument("--background", type=int, default=0, help="CPU-bound jobs beside each run")
    toys.add_argument("--background-threads", type=int, default=1, help="threads of each job")
    toys.add_argument(
        "--background-warmup", type=float, default=90.0, help="seconds before the first run"
    )
    toys.add_argument("--name", default="scale_toys", help="OUT/NAME.json (and NAME.md)")
    toys.add_argument(
        "--old-root", type=Path, default=None, help="checkout of the old code (git worktree)"
    )
    toys.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    toys.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    toys.set_defaults(func=run_toys)
    args = parser.parse_args(argv)
    args.func(args, argv)


if __name__ == "__main__":
    main()
