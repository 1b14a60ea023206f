"""Training throughput as the catalogue grows: positives/s of one model per family, trained as
``rechub train --model NAME`` trains it (its ``train_defaults``), at 1.7k, 12k, 100k and 1M items.

    python -m benchmarks.throughput_scan [--models YoutubeDNN,SASRec,ComirecSA] \
        [--sizes ml-100k,toys,100000,1000000] [--steps 40] [--threads 1]

Data: ``ml-100k`` is MovieLens-100K (1,682 items), ``toys`` Amazon Toys_and_Games in the
S3-Rec preprocessing (11,924 items, ``../shared/data/amazon-s3rec``); a number N is the scale
benchmark's synthetic generator (``benchmarks.scale.big_interactions``: Zipf-like popularity,
every item occurs) with N items and 2N interactions (users of 20-30 interactions), histories
of 20. Timing: a fresh model and trainer per (model, size), in its own process; ``fit`` for
one epoch over 3 warm-up batches, then over ``--steps`` batches of randomly chosen training
rows (user sequences for sequence models), timed by the trainer's epoch clock; positives/s is
the trainer's ``samples_per_s`` (training positives, for sequence models predicted positions).

Writes ``OUT/throughput_scan.json`` and the section "Cost growth with the catalogue" of
``OUT/throughput.md`` (replaced if present).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Cost growth with the catalogue"


def _data(size: str) -> Any:
    from rechub_core.datasets import default_data_dir, load_movielens_100k, load_sequence_file
    from rechub_core.preprocess import prepare

    if size == "ml-100k":
        return prepare(load_movielens_100k(default_data_dir() / "ml-100k"), 50, 5)
    if size == "toys":
        path = ROOT.parent / "shared" / "data" / "amazon-s3rec" / "Toys_and_Games.txt"
        return prepare(load_sequence_file(path), 50, 5)
    from benchmarks.scale import big_interactions

    n = int(size)
    return prepare(big_interactions(n, 2 * n, 20, 30, 100), 20, 5)


def worker(model_name: str, size: str, steps: int, threads: int) -> dict[str, Any]:
    import torch

    from benchmarks.throughput import subset_loader
    from rechub_core.data import loaders_from_prepared
    from rechub_core.plugins import get_spec
    from rechub_core.runs import build_model, build_trainer, default_settings
    from rechub_core.schema import DataSchema

    data = _data(size)
    spec = get_spec("model", model_name)
    settings = default_settings(spec, epochs=1)
    torch.manual_seed(0)
    model = build_model(spec, DataSchema.from_prepared(data), {})
    train, _, _ = loaders_from_prepared(data, settings.batch_size, 0)
    seq = bool(getattr(model, "trains_on_sequences", False))
    batch = settings.sequence_batch_size if seq else settings.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(model, settings, tmp, verbose=False, threads=threads)
        trainer.fit(subset_loader(train, 3, batch, seq, 1))  # warm-up
        history = trainer.fit(subset_loader(train, steps, batch, seq, 2))
    return {
        "model": model_name,
        "family": spec.family,
        "size": size,
        "items": int(data.vocab["item_id"]) - 1,
        "sampler": getattr(trainer.sampler, "choice", settings.sampler) or settings.sampler,
        "optimizer": type(trainer.optimizer).__name__,
        "batch": batch,
        "steps": steps,
        "seconds": history[-1]["seconds"],
        "positives_per_s": history[-1]["samples_per_s"],
        "threads": torch.get_num_threads(),
        "load_avg": os.getloadavg(),
    }


def markdown(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    items = {r["size"]: r["items"] for r in rows}
    lines = [
        SECTION,
        "",
        f"Command: `{payload['command']}`  ",
        f"{payload['machine']}",
        "",
        "Positives per second (training positives; sequence models: predicted positions) of "
        "one model per family trained with its `train_defaults`, one thread; the sampler "
        "column is what the `auto` rule chose (full softmax up to 5,000 items, 25,000 for the "
        "sequential models, 512 shared negatives above), the optimizer what the sparse rule "
        "chose (row-wise lazy Adam with "
        "sparse gradients for tables of >= 50,000 rows). See `benchmarks/throughput_scan.py`. "
        "Other engineers' jobs ran on the machine (load average per row in the JSON).",
        "",
        "| family | model | " + " | ".join(f"{items[s]:,} items" for s in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["size"]: r for r in rows if r["model"] == model}
        cells = []
        for s in sizes:
            r = mine.get(s)
            if r is None or "error" in r:
                cells.append("-" if r is None else f"error: {r['error'][:60]}")
            else:
                cells.append(
                    f"{r['positives_per_s']:,.0f} ({r['sampler']}, {r['optimizer']}, "
                    f"load {r['load_avg'][0]:.1f})"
                )
        family = next(iter(mine.values()))["family"]
        lines.append(f"| {family} | {model} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Torch-RecHub's models were not run at these sizes (its trainer materialises "
        "per-row negatives and dense updates; see the MovieLens-100K table above).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="YoutubeDNN,SASRec,ComirecSA")
    ap.add_argument("--sizes", default="ml-100k,toys,100000,1000000")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.steps, args.threads)))
        return
    from benchmarks.common import command_line, machine, machine_line

    rows: list[dict[str, Any]] = []
    for size in args.sizes.split(","):
        for model in args.models.split(","):
            cmd = [sys.executable, "-m", "benchmarks.throughput_scan", "--worker", model, size]
            cmd += ["--steps", str(args.steps), "--threads", str(args.threads)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            start = time.perf_counter()
            try:
                done = subprocess.run(
                    cmd, capture_output=True, text=True, env=env, timeout=args.timeout, cwd=ROOT
                )
                lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
                row = (
                    json.loads(lines[-1])
                    if done.returncode == 0 and lines
                    else {"model": model, "size": size, "error": done.stderr[-300:]}
                )
            except subprocess.TimeoutExpired:
                row = {"model": model, "size": size, "error": "time limit"}
            row["wall_s"] = time.perf_counter() - start
            row.setdefault("items", 0)
            row.setdefault("family", "")
            rows.append(row)
            print(json.dumps(row), flush=True)
    payload = {
        "command": command_line("benchmarks.throughput_scan", argv),
        "machine": machine_line(machine()),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput_scan.json").write_text(json.dumps(payload, indent=2) + "\n")
    md_path = args.out / "throughput.md"
    old = md_path.read_text() if md_path.exists() else ""
    if SECTION in old:
        old = old[: old.index(SECTION)].rstrip() + "\n"
    md_path.write_text((old + "\n" if old else "") + markdown(payload))


if __name__ == "__main__":
    main()
