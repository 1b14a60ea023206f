"""Data preparation speed and memory: rechub's ``prepare`` + one epoch of training negatives
against Torch-RecHub 0.9.0's ``generate_seq_feature_match`` + ``gen_model_input``.

    python -m benchmarks.prep [--datasets ml-100k,synthetic-1m] [--trh-timeout 540]

The same interaction frame (written once to CSV under ``benchmarks/.work/prep/<dataset>``:
events + user profile + item side columns) is fed to both libraries. Each library runs in its
own subprocess (ours in this virtualenv, Torch-RecHub in ``benchmarks/.venvs/torch-rechub``),
so the peak RSS of each is its own (``ru_maxrss`` of that process; it includes the interpreter,
numpy/pandas/torch imports and the input frame, reported separately as "after load").

What is timed for rechub (``--worker`` below; all stages summed):

1. ``prepare(interactions, max_len=50, min_interactions=5)``: id encoding, the protocol's
   ordering and leave-one-out split, padded histories of every training row, validation and
   test splits with their seen-item CSR, per-user training sequences, item table and counts;
2. ``loaders_from_prepared(data, batch_size=1024)``: the tensors the trainer iterates;
3. one epoch of training negatives exactly as ``MatchTrainer`` draws them in mode 0: a shuffled
   pass over the training loader, ``UniformSampler(n_neg=3).sample`` per batch (3 negatives
   per positive, never the positive) and the ``(B, 1 + 3)`` candidate ids and validity mask.

Also timed, not in the total: the same epoch with ``PopularitySampler(n_neg=3, alpha=0.75)``,
the distribution of Torch-RecHub's ``sample_method=1``.

What is timed for Torch-RecHub: see ``benchmarks/trh_prep_worker.py`` (the DSSM example's
label encoding, ``generate_seq_feature_match(mode=0, neg_ratio=3, sample_method=1)`` and
``gen_model_input`` of the train and test rows).

Writes ``benchmarks/results/prep.json`` and ``prep.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.common import (
    OUR_PYTHON,
    TRH_PYTHON,
    WORK,
    command_line,
    fmt,
    machine,
    machine_line,
    peak_rss_self_mb,
    run_measured,
    write_results,
)

DATASETS = ("ml-100k", "synthetic-1m")
#: synthetic_interactions arguments of the 1M set (~1.0M interactions, 20k users, 10k items)
SYNTHETIC_1M = {
    "n_users": 20_000,
    "n_items": 10_000,
    "n_clusters": 50,
    "min_len": 10,
    "max_len": 92,
    "seed": 0,
}
BATCH_SIZE = 1024
N_NEG = 3
MAX_LEN = 50


def write_frame(name: str, data_dir: Path | None, folder: Path) -> dict[str, Any]:
    """Write ``events.csv``, ``users.csv``, ``items.csv`` of data set ``name`` into ``folder``."""
    from rechub_core.datasets import default_data_dir, load_movielens_100k
    from rechub_core.synthetic import synthetic_interactions

    if name == "ml-100k":
        inter = load_movielens_100k(data_dir or default_data_dir() / "ml-100k")
        source = "MovieLens-100K (u.data, u.user: gender/age bucket/occupation, u.item: category)"
    elif name in ("synthetic-1m", "synthetic-100k"):
        params = dict(SYNTHETIC_1M)
        if name == "synthetic-100k":  # a small set for trying the script out
            params.update(n_users=2_000, n_items=1_000)
        inter = synthetic_interactions(**params)  # type: ignore[arg-type]
        source = f"rechub_core.synthetic.synthetic_interactions({params})"
    else:
        raise SystemExit(f"unknown data set {name!r}; choose from {DATASETS} (or synthetic-100k)")
    folder.mkdir(parents=True, exist_ok=True)
    inter.events.to_csv(folder / "events.csv", index=False)
    assert inter.users is not None and inter.items is not None
    inter.users.reset_index().to_csv(folder / "users.csv", index=False)
    items = inter.items.drop(columns=["title"], errors="ignore").reset_index()
    items.to_csv(folder / "items.csv", index=False)
    return {
        "name": name,
        "source": source,
        "interactions": len(inter.events),
        "users": int(inter.events["user_id"].nunique()),
        "items": int(inter.events["item_id"].nunique()),
        "user_columns": [str(c) for c in inter.users.columns],
        "item_columns": [str(c) for c in items.columns if c != "item_id"],
    }


# --------------------------------------------------------------------------- our worker


def _epoch_of_negatives(train_dl: Any, sampler: Any, seed: int) -> int:
    """One shuffled pass drawing negatives per batch as MatchTrainer does; returns #positives."""
    import torch

    sampler.bind(train_dl.n_items, train_dl.item_counts)
    train_dl.set_epoch(0)
    gen = torch.Generator().manual_seed(seed)
    n = 0
    for batch in train_dl:
        pos = batch["item_id"]  # (B,)
        neg = sampler.sample(pos, gen)  # (B, 3)
        cand = torch.cat([pos.view(-1, 1), neg.ids], dim=1)  # (B, 1 + 3)
        valid = cand != pos.view(-1, 1)
        valid[:, 0] = True
        n += int(pos.shape[0])
    return n


def our_run(folder: Path, seed: int) -> dict[str, Any]:
    """One timed pass of rechub's preparation over the CSVs in ``folder``."""
    from rechub_core.data import loaders_from_prepared
    from rechub_core.datasets import Interactions
    from rechub_core.preprocess import prepare
    from rechub_core.samplers import PopularitySampler, UniformSampler

    events = pd.read_csv(folder / "events.csv")
    users = pd.read_csv(folder / "users.csv").set_index("user_id")
    items = pd.read_csv(folder / "items.csv").set_index("item_id")
    inter = Interactions(events=events, users=users, items=items, name=folder.name)
    rss_after_load = peak_rss_self_mb()
    stages: dict[str, float] = {}

    t = time.perf_counter()
    data = prepare(inter, max_len=MAX_LEN, min_interactions=5)
    stages["prepare"] = time.perf_counter() - t

    t = time.perf_counter()
    train_dl, _val_dl, _test_dl = loaders_from_prepared(data, batch_size=BATCH_SIZE, seed=seed)
    stages["loaders"] = time.perf_counter() - t

    t = time.perf_counter()
    positives = _epoch_of_negatives(train_dl, UniformSampler(n_neg=N_NEG), seed)
    stages["uniform_negatives_epoch"] = time.perf_counter() - t
    peak_main = peak_rss_self_mb()

    t = time.perf_counter()
    _epoch_of_negatives(train_dl, PopularitySampler(n_neg=N_NEG, alpha=0.75), seed)
    popularity_epoch = time.perf_counter() - t
    return {
        "stages": stages,
        "seconds": float(sum(stages.values())),
        "popularity_negatives_epoch_s": popularity_epoch,
        "train_positives": positives,
        "history_shape": list(data.train["hist_item_id"].shape),
        "peak_rss_after_load_mb": rss_after_load,
        "peak_rss_timed_mb": peak_main,
    }


def worker(folder: Path, repeats: int, seed: int, threads: int) -> None:
    """``--worker``: run :func:`our_run` ``repeats`` times and print one JSON line."""
    import torch

    import rechub_core.data  # (imports outside the timed region)
    import rechub_core.preprocess  # noqa: F401

    torch.set_num_threads(threads)
    runs = [our_run(folder, seed) for _ in range(repeats)]
    print(json.dumps({"library": "rechub", "runs": runs, "peak_rss_mb": peak_rss_self_mb()}))


# --------------------------------------------------------------------------- orchestration


def _median(runs: list[dict[str, Any]], key: str = "seconds") -> float:
    return float(statistics.median(r[key] for r in runs))


def _stage_medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    names = list(runs[0]["stages"])
    return {n: float(statistics.median(r["stages"][n] for r in runs)) for n in names}


def _trh_partial(progress: Path) -> dict[str, float]:
    """Stages a stopped Torch-RecHub run finished (first repeat), from its progress file."""
    stages: dict[str, float] = {}
    if progress.exists():
        for line in progress.read_text().splitlines():
            rec = json.loads(line)
            if rec["stage"] in stages:
                break
            stages[rec["stage"]] = rec["seconds"]
    return stages


def bench_dataset(
    name: str, args: argparse.Namespace, repeats_ours: int, repeats_trh: int
) -> dict[str, Any]:
    """Both libraries on one data set: one subprocess each."""
    folder = WORK / "prep" / name
    info = write_frame(name, args.data_dir, folder)
    print(f"[prep] {name}: {info['interactions']:,} interactions", file=sys.stderr)

    ours_cmd = [str(OUR_PYTHON), "-m", "benchmarks.prep", "--worker", str(folder)]
    ours_cmd += ["--repeats", str(repeats_ours), "--seed", str(args.seed)]
    ours_cmd += ["--threads", str(args.threads)]
    ours = run_measured(ours_cmd, timeout_s=args.ours_timeout)
    if ours["result"] is None:
        raise SystemExit(f"our worker failed on {name}:\n{ours['stderr_tail']}")
    o_runs = ours["result"]["runs"]
    print(f"[prep] {name}: rechub {_median(o_runs):.2f} s", file=sys.stderr)

    progress = folder / "trh_progress.jsonl"
    progress.unlink(missing_ok=True)
    trh_cmd = [str(TRH_PYTHON), "benchmarks/trh_prep_worker.py", str(folder)]
    trh_cmd += ["--repeats", str(repeats_trh), "--seed", str(args.seed)]
    trh_cmd += ["--progress", str(progress)]
    trh = run_measured(trh_cmd, timeout_s=args.trh_timeout, rss_cap_mb=args.trh_rss_cap_mb)
    row: dict[str, Any] = {"dataset": info, "rechub": ours, "torch_rechub": trh}
    o_sec = _median(o_runs)
    summary: dict[str, Any] = {
        "rechub_seconds": o_sec,
        "rechub_stages": _stage_medians(o_runs),
        "rechub_popularity_epoch_s": _median(o_runs, "popularity_negatives_epoch_s"),
        "rechub_peak_rss_mb": ours["peak_rss_mb"],
        "rechub_rss_after_load_mb": o_runs[0]["peak_rss_after_load_mb"],
        "rechub_train_positives": o_runs[0]["train_positives"],
        "torch_rechub_peak_rss_mb": trh["peak_rss_mb"],
    }
    if trh["result"] is not None:
        t_runs = trh["result"]["runs"]
        t_sec = _median(t_runs)
        stages = _stage_medians(t_runs)
        summary.update(
            {
                "torch_rechub_seconds": t_sec,
                "torch_rechub_lower_bound": False,
                "torch_rechub_stages": stages,
                "torch_rechub_rss_after_load_mb": trh["result"]["peak_rss_after_load_mb"],
                "torch_rechub_train_rows": t_runs[0]["train_rows"],
                "torch_rechub_train_positives": t_runs[0]["train_positives"],
                "ratio_total": t_sec / o_sec,
                "ratio_generate_seq_feature_match_only": (
                    stages["generate_seq_feature_match"] / o_sec
                ),
            }
        )
    else:
        why = "time limit" if trh["timed_out"] else "RSS cap" if trh["memory_capped"] else "error"
        bound = trh["wall_s"]
        summary.update(
            {
                "torch_rechub_seconds": bound,
                "torch_rechub_lower_bound": True,
                "torch_rechub_stopped_by": why,
                "torch_rechub_stages": _trh_partial(progress),
                "ratio_total": bound / o_sec,
                "torch_rechub_stderr_tail": trh["stderr_tail"][-600:],
            }
        )
    row["summary"] = summary
    print(
        f"[prep] {name}: torch-rechub {summary['torch_rechub_seconds']:.1f} s"
        f"{' (lower bound)' if summary['torch_rechub_lower_bound'] else ''}, "
        f"ratio {summary['ratio_total']:.1f}x",
        file=sys.stderr,
    )
    return row


def markdown(rows: list[dict[str, Any]], command: str, info: dict[str, Any], threads: int) -> str:
    """The results table and what was timed."""
    lines = [
        "# Data preparation: rechub vs Torch-RecHub 0.9.0",
        "",
        f"Command: `{command}`  ",
        machine_line(info),
        "",
        "Same interaction frame (events + user profile + item side columns) fed to both, each "
        "library in its own subprocess; seconds are the median over the repeats in that "
        "process; peak RSS is the process's own `ru_maxrss` (includes interpreter, imports and "
        'the loaded frame, shown as "after load").',
        "",
        "| data set | interactions | rechub s | Torch-RecHub s | ratio theirs/ours "
        "| of which generate_seq_feature_match s (ratio) | rechub peak MB (after load) "
        "| Torch-RecHub peak MB (after load) | training rows ours / theirs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["summary"]
        d = r["dataset"]
        lb = s["torch_rechub_lower_bound"]
        t_sec = f"{'> ' if lb else ''}{fmt(s['torch_rechub_seconds'], 1)}"
        if lb:
            t_sec += f" (stopped: {s['torch_rechub_stopped_by']})"
        gsfm = s["torch_rechub_stages"].get("generate_seq_feature_match")
        gsfm_cell = "-" if gsfm is None else f"{gsfm:.1f} ({gsfm / s['rechub_seconds']:.1f}x)"
        trh_rss = s.get("torch_rechub_rss_after_load_mb")
        lines.append(
            f"| {d['name']} | {d['interactions']:,} | {s['rechub_seconds']:.2f} | {t_sec} | "
            f"{'> ' if lb else ''}{s['ratio_total']:.1f}x | {gsfm_cell} | "
            f"{fmt(s['rechub_peak_rss_mb'], 0)} ({fmt(s['rechub_rss_after_load_mb'], 0)}) | "
            f"{fmt(s['torch_rechub_peak_rss_mb'], 0)} ({fmt(trh_rss, 0)}) | "
            f"{s['rechub_train_positives']:,} positives (+3 negatives each, drawn per epoch) / "
            f"{fmt(s.get('torch_rechub_train_rows'))} rows "
            f"({fmt(s.get('torch_rechub_train_positives'))} positives) |"
        )
    lines += ["", "Stage seconds (median):", ""]
    for r in rows:
        s = r["summary"]
        ours = ", ".join(f"{k} {v:.2f}" for k, v in s["rechub_stages"].items())
        theirs = ", ".join(f"{k} {v:.2f}" for k, v in s["torch_rechub_stages"].items())
        lines.append(
            f"- {r['dataset']['name']}: rechub: {ours} (popularity sampler epoch instead of "
            f"uniform: {s['rechub_popularity_epoch_s']:.2f}); Torch-RecHub: {theirs or '-'}"
        )
    lines += [
        "",
        "What is timed:",
        "",
        "- rechub: `prepare(max_len=50, min_interactions=5)` (encoding, protocol split, padded "
        "histories of every training row, validation/test splits with seen-item CSR, "
        "per-user training sequences) + `loaders_from_prepared(batch_size=1024)` + one epoch "
        "of negatives as `MatchTrainer` draws them in mode 0 (`UniformSampler(n_neg=3)` per "
        f"batch, with the candidate ids and validity mask); torch threads: {threads} (on this "
        "shared 2-core machine, 2 OpenMP threads make each tensor gather wait for a descheduled "
        "thread: ~16 ms instead of ~0.6 ms per batch).",
        "- Torch-RecHub: the DSSM example's pipeline: `LabelEncoder` on every sparse column + "
        "profiles by `drop_duplicates`, `generate_seq_feature_match(mode=0, neg_ratio=3, "
        "sample_method=1, min_item=0)`, `gen_model_input(seq_max_len=50)` on the training and "
        "test rows. Its negatives are drawn once, before training, and stored as rows "
        "(4 rows per positive).",
        "- Not identical work: rechub also builds a validation split, seen-item CSRs and "
        "per-user sequences; Torch-RecHub materialises 3 labelled negative rows per positive "
        "(each with its own padded history).",
    ]
    for r in rows:
        s = r["summary"]
        d = r["dataset"]
        lines.append(f"- {d['name']}: {d['source']}; {d['users']:,} users, {d['items']:,} items.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--data-dir", type=Path, default=None, help="MovieLens-100K folder")
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--repeats", type=int, default=3, help="rechub repeats per data set")
    ap.add_argument(
        "--trh-repeats-small", type=int, default=3, help="Torch-RecHub repeats on ml-100k"
    )
    ap.add_argument("--trh-timeout", type=float, default=540.0, help="seconds per TRH process")
    ap.add_argument("--trh-rss-cap-mb", type=float, default=14_000.0)
    ap.add_argument("--ours-timeout", type=float, default=300.0)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of our worker (Torch-RecHub's pipeline is single-threaded Python)",
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.repeats, args.seed, args.threads)
        return
    info = machine()
    rows = []
    for name in args.datasets.split(","):
        trh_repeats = args.trh_repeats_small if name == "ml-100k" else 1
        rows.append(bench_dataset(name, args, args.repeats, trh_repeats))
    command = command_line("benchmarks.prep", argv)
    payload = {"command": command, "machine": info, "threads": args.threads, "rows": rows}
    md = markdown(rows, command, info, args.threads)
    write_results("prep", payload, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
