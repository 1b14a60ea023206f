"""Where a default training step goes (issue #14, "profile, then remove what dominates"): each
model built and trained as ``rechub train --model NAME --data DATA`` does (its
``train_defaults``), one process per run of this script.

    python -m benchmarks.step_profile [--models SASRec,DSSM] [--data PATH|movielens-100k|synthetic]
        [--steps 150] [--warmup 10] [--threads 2] [--top 12] [--out benchmarks/results]

Per model: the data, model and trainer built once; then ``--warmup`` steps, then ``--steps``
steps timed by phase (getting the batch from the loader, the loss's forward pass, the backward
pass, the optimizer step; wall clock, milliseconds per step); one validation pass (full
ranking of every user) and the per-epoch projection (steps per epoch x ms per step); then the
same steps again under ``torch.profiler`` for the ``--top`` operators by self CPU time (the
profiler's own overhead makes that pass slower: its shares, not its milliseconds, are the
result). The default data is Amazon Toys_and_Games in the S3-Rec preprocessing
(``../shared/data/amazon-s3rec``, 11,924 items).

Writes ``OUT/step_profile.json`` and ``OUT/step_profile.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOYS = ROOT.parent / "shared" / "data" / "amazon-s3rec" / "Toys_and_Games.txt"
PHASES = ("batch", "forward + loss", "backward", "optimizer")


def _trainer(model_name: str, source: str, threads: int, work: Path) -> tuple[Any, Any, Any]:
    """(trainer, training loader, validation loader) as ``rechub train`` builds them."""
    import torch

    from rechub_core import runs
    from rechub_core.checks import check_run_config
    from rechub_core.config import config_from_dict
    from rechub_core.data import loaders_from_prepared
    from rechub_core.preprocess import prepare
    from rechub_core.schema import DataSchema

    cfg = config_from_dict(
        {
            "model": {"name": model_name},
            "data": {"source": source, "max_len": 50},
            "train": {"seed": 1, "threads": threads},
        }
    )
    spec = check_run_config(cfg)
    data = prepare(runs.load_interactions(cfg), cfg.data.max_len, cfg.data.min_interactions)
    torch.manual_seed(1)
    model = runs.build_model(spec, DataSchema.from_prepared(data), dict(cfg.model.params))
    settings = runs.effective_settings(cfg, spec)
    train_dl, val_dl, _ = loaders_from_prepared(data, settings.batch_size, 1)
    trainer = runs.build_trainer(
        model,
        settings,
        work,
        seed=1,
        device="cpu",
        metric="ndcg@10",
        verbose=False,
        gather_negatives=False,
        threads=threads,
        logits_dtype="auto",
    )
    trainer.sampler.bind(train_dl.n_items, train_dl.item_counts)
    return trainer, train_dl, val_dl


def _batches(loader: Any) -> Iterator[Any]:
    """The loader's batches, over and over (an epoch may be shorter than the timed steps)."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def profile_model(
    model_name: str, source: str, steps: int, warmup: int, threads: int, top: int
) -> dict[str, Any]:
    """Phase times (ms per step), the epoch projection, validation time and the top operators
    of ``steps`` default training steps of ``model_name`` on ``source``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trainer, train_dl, val_dl = _trainer(model_name, source, threads, Path(tmp))
        prep_s = time.perf_counter() - start
        loader = trainer._train_rows(train_dl)  # per-user sequences for sequence models
        gen = torch.Generator().manual_seed(1)
        trainer.model.train()
        batches = _batches(loader)
        totals = dict.fromkeys(PHASES, 0.0)
        targets = 0

        def step(timed: bool) -> None:
            nonlocal targets
            marks = [time.perf_counter()]
            batch = next(batches)
            marks.append(time.perf_counter())
            loss = trainer._step(batch, loader, gen)
            marks.append(time.perf_counter())
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            marks.append(time.perf_counter())
            trainer.optimizer.step()
            marks.append(time.perf_counter())
            if timed:
                for name, a, b in zip(PHASES, marks, marks[1:], strict=False):
                    totals[name] += b - a
                targets += trainer._last_batch_targets

        for _ in range(warmup):
            step(False)
        for _ in range(steps):
            step(True)
        start = time.perf_counter()
        trainer._validate(val_dl, train_dl)
        val_s = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                step(False)
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        all_self = sum(e.self_cpu_time_total for e in ops) or 1.0
        step_ms = 1000 * sum(totals.values()) / steps
        return {
            "model": model_name,
            "threads": torch.get_num_threads(),
            "steps": steps,
            "targets_per_step": targets / steps,
            "steps_per_epoch": len(loader),
            # data, model and trainer built in this process (the first model also pays the
            # imports; later ones may reuse its parsed data): not a preparation benchmark
            "setup_s": prep_s,
            "phases_ms": {k: 1000 * v / steps for k, v in totals.items()},
            "step_ms": step_ms,
            "epoch_s_projected": step_ms * len(loader) / 1000,
            "validation_s": val_s,
            "top_ops": [
                {
                    "op": e.key,
                    "calls_per_step": e.count / steps,
                    "self_share": e.self_cpu_time_total / all_self,
                }
                for e in ops[:top]
            ],
            "load_avg": list(os.getloadavg()),
        }


def markdown(payload: dict[str, Any]) -> str:
    """The report: per model, the phases and the operators that dominate."""
    lines = [
        "# Where a default training step goes",
        "",
        f"Command: `{payload['command']}`  ",
        payload["machine_line"],
        "",
        "Each model built and trained as `rechub train --model NAME` does (its `train_defaults`) "
        f"on {payload['data']}. Phases: wall milliseconds per step over {payload['steps']} "
        "steps after the warm-up (batch = the loader's next batch; forward + loss = "
        "encoding, sampling and the loss; backward; optimizer = Adam's step). The epoch is "
        "projected from the steps (steps per epoch x ms per step); validation is one full "
        "ranking of every user. Operators: the top ones by self CPU time under `torch.profiler` "
        "over the same number of steps, as shares of the profiled total.",
        "",
    ]
    for r in payload["runs"]:
        lines += [
            f"## {r['model']}",
            "",
            f"{r['threads']} thread(s), {r['targets_per_step']:,.0f} training targets a step, "
            f"{r['steps_per_epoch']:,} steps an epoch: **{r['step_ms']:.1f} ms a step, "
            f"{r['epoch_s_projected']:.1f} s an epoch projected**, validation "
            f"{r['validation_s']:.1f} s; load average {r['load_avg'][0]:.1f} at the end.",
            "",
            "| phase | ms / step | share |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {ms:.2f} | {ms / r['step_ms']:.0%} |"
            for name, ms in r["phases_ms"].items()
        ]
        lines += ["", "| operator | calls / step | self CPU share |", "|---|---|---|"]
        lines += [
            f"| `{o['op']}` | {o['calls_per_step']:.1f} | {o['self_share']:.1%} |"
            for o in r["top_ops"]
        ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="SASRec,DSSM")
    ap.add_argument("--data", default=str(TOYS), help="a file, movielens-100k or synthetic")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.threads < 1:
        ap.error("--steps and --threads must be at least 1")
    from benchmarks.common import command_line, machine, machine_line, write_results

    info = machine()  # at the start: load, commit
    payload: dict[str, Any] = {
        "command": command_line("benchmarks.step_profile", argv),
        "machine": info,
        "machine_line": machine_line(info),
        "data": Path(args.data).name if Path(args.data).exists() else args.data,
        "steps": args.steps,
        "runs": [],
    }
    for name in args.models.split(","):
        run = profile_model(name, args.data, args.steps, args.warmup, args.threads, args.top)
        payload["runs"].append(run)
        print(f"{name}: {run['step_ms']:.1f} ms a step", file=sys.stderr)
    write_results("step_profile", payload, markdown(payload), args.out)


if __name__ == "__main__":
    main()
