"""Training throughput as the catalogue grows: positives/s of one model per family, trained as
``rechub train --model NAME`` trains it (its ``train_defaults``), at 1.7k, 12k, 100k and 1M items.

    python -m benchmarks.throughput_scan [--models YoutubeDNN,DSSM,SASRec,ComirecSA] \
        [--sizes ml-100k,toys,100000,1000000] [--steps 40] [--threads 1] \
        [--external torch-rechub]

Data: ``ml-100k`` is MovieLens-100K (1,682 items), ``toys`` Amazon Toys_and_Games in the
S3-Rec preprocessing (11,924 items, ``../shared/data/amazon-s3rec``); a number N is the scale
benchmark's synthetic generator (``benchmarks.scale.big_interactions``: Zipf-like popularity,
every item occurs) with N items and 2N interactions (users of 20-30 interactions), histories
of 20. Timing: a fresh model and trainer per (model, size), in its own process; ``fit`` for
one epoch over 3 warm-up batches, then over ``--steps`` batches of randomly chosen training
rows (user sequences for sequence models), timed by the trainer's epoch clock; positives/s is
the trainer's ``samples_per_s`` (training positives, for sequence models predicted positions).

``--external torch-rechub`` adds Torch-RecHub 0.9.0's DSSM and YoutubeDNN (those in
``--models``) at each size, right after ours: the size's data is written as a split folder
(``benchmarks.quality.write_split``) and ``benchmarks/trh_throughput_worker.py`` runs in the
peer's virtualenv (``ONLY=torch-rechub bash benchmarks/external/setup_envs.sh``) with its
example's settings, ``--threads``, 3 warm-up and ``--steps`` timed batches, stopped at
``--external-timeout`` s (its data preparation at ``--external-prep-timeout`` s) or at
``--external-rss-cap-mb``; a stopped run is recorded with the reason.

Writes ``OUT/throughput_scan.json`` and the section "Cost growth with the catalogue" of
``OUT/throughput.md`` (replaced if present; ``--render`` only rewrites that section from the
JSON).
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


def _interactions(size: str) -> tuple[Any, int]:
    """The interactions of ``size`` and the history length the scan prepares them with."""
    from rechub_core.datasets import default_data_dir, load_movielens_100k, load_sequence_file

    if size == "ml-100k":
        return load_movielens_100k(default_data_dir() / "ml-100k"), 50
    if size == "toys":
        path = ROOT.parent / "shared" / "data" / "amazon-s3rec" / "Toys_and_Games.txt"
        return load_sequence_file(path), 50
    from benchmarks.scale import big_interactions

    n = int(size)
    return big_interactions(n, 2 * n, 20, 30, 100), 20


def _prepared(size: str) -> tuple[Any, Any]:
    """``size``'s interactions and the prepared data the scan trains on (users of >= 5)."""
    from rechub_core.preprocess import prepare

    inter, max_len = _interactions(size)
    return inter, prepare(inter, max_len, 5)


def _data(size: str) -> Any:
    return _prepared(size)[1]


def write_size_split(size: str, folder: Path) -> dict[str, Any]:
    """``size``'s data as a split folder in the interchange format of ``benchmarks/external``
    (``benchmarks.quality.write_split``, the writer ``benchmarks/throughput.py`` uses): the
    same interactions and protocol split our rows train on."""
    from benchmarks.quality import write_split

    inter, data = _prepared(size)
    write_split(inter, data, folder)
    return {"size": size, "items": int(data.n_items), "interactions": len(inter.events)}


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


#: the models Torch-RecHub's rows are measured for, with its example's settings (described)
EXTERNAL_MODELS = {
    "DSSM": "point-wise BCE (mode 0), 3 popularity-sampled negatives per positive stored as "
    "rows before training, batch 4,096 rows = 1,024 positives, Adam lr 1e-4",
    "YoutubeDNN": "list-wise softmax (mode 2) over the positive and 3 popularity-sampled "
    "negatives stored per row, batch 2,048 positives, Adam lr 1e-4",
}


def trh_row(split: Path, model: str, size: str, args: argparse.Namespace) -> dict[str, Any]:
    """One Torch-RecHub measurement: ``trh_throughput_worker.py`` on ``split`` in its own
    virtualenv, one thread, ``args.steps`` timed batches after 3 warm-up batches, stopped at
    ``args.external_timeout`` s (its preparation at ``args.external_prep_timeout`` s) or at
    ``args.external_rss_cap_mb`` MiB of RSS; a stopped run is a row saying why."""
    from benchmarks.common import TRH_PYTHON, run_measured

    cmd = [str(TRH_PYTHON), "benchmarks/trh_throughput_worker.py", str(split), "--model", model]
    cmd += ["--threads", str(args.threads), "--steps", str(args.steps), "--warmup-steps", "3"]
    cmd += ["--prep-timeout", str(int(args.external_prep_timeout))]
    load = os.getloadavg()
    res = run_measured(
        cmd,
        timeout_s=args.external_timeout,
        rss_cap_mb=args.external_rss_cap_mb,
        env={"OMP_NUM_THREADS": str(args.threads)},
    )
    out = res["result"] or {}
    timed = next(iter((out.get("by_threads") or {}).values()), {})
    row: dict[str, Any] = {
        "library": "torch-rechub",
        "model": model,
        "size": size,
        "settings": EXTERNAL_MODELS[model],
        "prep_s": out.get("prep_s"),
        "prep_total_s": out.get("prep_total_s"),
        "train_rows_per_epoch": out.get("train_rows_per_epoch"),
        "steps": timed.get("steps"),
        "seconds": timed.get("seconds"),
        "positives_per_s": timed.get("positives_per_s"),
        "rows_per_s": timed.get("rows_per_s"),
        "wall_s": res["wall_s"],
        "peak_rss_mb": res["peak_rss_mb"],
        "load_avg": load,
    }
    if res["memory_capped"]:
        row["error"] = f"over the memory cap of {args.external_rss_cap_mb:,.0f} MiB RSS"
    elif res["timed_out"]:
        row["error"] = f"past the time limit of {args.external_timeout:,.0f} s"
    elif out.get("error") or timed.get("error"):
        row["error"] = str(out.get("error") or timed.get("error"))
    elif not out:
        row["error"] = "no result: " + res["stderr_tail"][-200:]
    if "error" in row and out and row["prep_s"] is None:
        stopped = out.get("prep_stopped_after_s", res["wall_s"])
        row["error"] += f" (during its data preparation, stopped after {stopped:,.0f} s)"
    return row


def external_rows(sizes: list[str], models: list[str], args: argparse.Namespace) -> list[dict]:
    """Torch-RecHub's rows: per size, the split folder (written in a subprocess of ours,
    timed), then one :func:`trh_row` per model of ``EXTERNAL_MODELS`` in ``models``."""
    from benchmarks.common import TRH_PYTHON, WORK, run_measured

    if not TRH_PYTHON.exists():
        raise SystemExit(
            f"{TRH_PYTHON} is missing: run `ONLY=torch-rechub bash "
            "benchmarks/external/setup_envs.sh` first"
        )
    rows: list[dict[str, Any]] = []
    for size in sizes:
        split = WORK / "throughput_scan" / f"split-{size}"
        cmd = [sys.executable, "-m", "benchmarks.throughput_scan", "--write-split", size]
        res = run_measured([*cmd, str(split)], timeout_s=args.timeout)
        if res["result"] is None:
            raise SystemExit(f"writing the split of {size} failed: {res['stderr_tail']}")
        for model in [m for m in models if m in EXTERNAL_MODELS]:
            row = trh_row(split, model, size, args)
            row.update(items=res["result"]["items"], split_write_s=res["wall_s"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _our_cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return f"error: {r['error'][:60]}"
    return (
        f"{r['positives_per_s']:,.0f} ({r['sampler']}, {r['optimizer']}, "
        f"load {r['load_avg'][0]:.1f})"
    )


def _their_cell(r: dict[str, Any] | None, steps: int) -> str:
    if r is None:
        return "-"
    if r.get("error"):
        return "not run: " + str(r["error"])[:140].replace("|", "/")
    short = f"{r['steps']} steps = its whole epoch, " if r["steps"] < steps else ""
    return (
        f"{r['positives_per_s']:,.0f} ({short}prep {r['prep_s']:,.0f} s, peak "
        f"{r['peak_rss_mb']:,.0f} MiB, load {r['load_avg'][0]:.1f})"
    )


def ratio_cell(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> str:
    """``ours / theirs`` positives/s as ``"12.3x"`` where both ran, else ``"-"``."""
    if not ours or not theirs or "error" in ours or theirs.get("error"):
        return "-"
    if not ours.get("positives_per_s") or not theirs.get("positives_per_s"):
        return "-"
    return f"{ours['positives_per_s'] / theirs['positives_per_s']:.1f}x"


def _batches(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Our batch size(s) per model of ``EXTERNAL_MODELS``, e.g. ``{"DSSM": "512"}``."""
    out: dict[str, set[int]] = {}
    for r in rows:
        if r["model"] in EXTERNAL_MODELS and r.get("batch"):
            out.setdefault(r["model"], set()).add(int(r["batch"]))
    return {m: "/".join(str(b) for b in sorted(v)) for m, v in out.items()}


def external_markdown(
    payload: dict[str, Any], sizes: list[str], items: dict[str, int]
) -> list[str]:
    """The Torch-RecHub table: per model our row, theirs and the ratio ours / theirs."""
    ext = payload.get("external_rows") or []
    if not ext:
        return [
            "Torch-RecHub's models were not run in this scan (`--external torch-rechub` "
            "adds them); see the MovieLens-100K table above.",
            "",
        ]
    a = payload["external_settings"]
    lines = [
        "### Torch-RecHub 0.9.0 at the same sizes",
        "",
        "Same interactions and protocol split as our rows (written with "
        "`benchmarks.quality.write_split`, the writer of `benchmarks/throughput.py`), fed to "
        "`benchmarks/trh_throughput_worker.py` in Torch-RecHub's own virtualenv: its "
        '`generate_seq_feature_match` + `gen_model_input` ("prep", timed apart from the '
        "training), then `MatchTrainer.train_one_epoch` over 3 warm-up batches and "
        f"{a['steps']} timed batches, {a['threads']} thread. Limits per run: "
        f"{a['timeout']:,.0f} s in all, {a['prep_timeout']:,.0f} s for the preparation, "
        f"{a['rss_cap_mb']:,.0f} MiB of RSS (the issue's bar for our 1M-item run is 8 GB); a "
        "run stopped at a limit is a row saying which, after how long. Positives/s counts "
        "(user, positive item) examples for both libraries.",
        "",
        "Not the same recipe: ours trains with our `train_defaults` (DSSM and YoutubeDNN: "
        "softmax loss, sampler `auto` = full softmax up to 5,000 items, 512 shared uniform "
        "negatives above, since commit 8218376; lr 3e-3; row-wise lazy Adam for tables of "
        ">= 50,000 rows; batch "
        + ", ".join(f"{m} {b}" for m, b in _batches(payload["rows"]).items())
        + " positives); Torch-RecHub uses its example's settings:",
        "",
    ]
    lines += [f"- {m}: {desc}." for m, desc in EXTERNAL_MODELS.items()]
    lines += [
        "",
        "So the work per positive differs: Torch-RecHub scores 4 items per positive (the "
        "positive and its 3 stored negatives; its point-wise DSSM runs both towers once per "
        "row, 4 times per positive); ours scores each positive against the whole catalogue "
        "(full softmax: 1,682 items at MovieLens-100K) or against 512 shared negatives. Its "
        "negatives are drawn once, before training, in the preparation (prep: seconds of "
        "`generate_seq_feature_match` + `gen_model_input`, paid before the first step and not "
        "in positives/s); ours draws them in the step, inside the timed loop. A ratio below "
        "1x means Torch-RecHub went through positives faster with its cheaper 4-item loss, "
        "not that the same loss runs faster there. Peak is the worker process's own RSS.",
        "",
        "| model | library | " + " | ".join(f"{items[s]:,} items" for s in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for model in dict.fromkeys(r["model"] for r in ext):
        ours = {r["size"]: r for r in payload["rows"] if r["model"] == model}
        theirs = {r["size"]: r for r in ext if r["model"] == model}
        cells = [
            ("rechub (train_defaults)", [_our_cell(ours.get(s)) for s in sizes]),
            (
                "Torch-RecHub 0.9.0 (example)",
                [_their_cell(theirs.get(s), a["steps"]) for s in sizes],
            ),
            ("ours / theirs", [ratio_cell(ours.get(s), theirs.get(s)) for s in sizes]),
        ]
        lines += [f"| {model} | {lib} | " + " | ".join(c) + " |" for lib, c in cells]
    lines.append("")
    return lines


def _load_note(payload: dict[str, Any]) -> str:
    """The range of the 1-minute load average over all rows, and what it means here."""
    loads = [r["load_avg"][0] for r in payload["rows"] + payload.get("external_rows", [])]
    loads = [x for x in loads if x is not None]
    if not loads:
        return ""
    from benchmarks.common import machine_busy

    cores = os.cpu_count() or 1
    head = (
        f"Load: the 1-minute load average was {min(loads):.1f}-{max(loads):.1f} at the start of "
        f"the rows on these {cores} cores"
    )
    if not machine_busy(max(loads)):  # no other training shared the cores
        return (
            f"{head} (the scan's own processes, one thread each, and the previous row's tail "
            "in the 1-minute average): each row had a core to itself."
        )
    return (
        f"{head} (other engineers' trainings and this scan, all at one thread): each measured "
        "process shared a core with others, so these figures are below what an idle machine "
        "gives; compare within this run."
    )


def markdown(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    items = {r["size"]: r["items"] for r in rows}
    load_end = ", ".join(f"{x:.2f}" for x in payload.get("load_average_at_end", []))
    lines = [
        SECTION,
        "",
        f"Command: `{payload['command']}`  ",
        f"{payload['machine']}" + (f"; load average at end {load_end}" if load_end else ""),
        "",
        "Positives per second (training positives; sequence models: predicted positions) of "
        "one model per family (two for the DSSM family) trained with its `train_defaults`, one "
        "thread; the sampler column is what the `auto` rule chose (full softmax up to 5,000 "
        "items for the DSSM family and the multi-interest models, 25,000 for the sequential "
        "models, 512 shared negatives above), the optimizer what the sparse rule chose "
        "(row-wise lazy Adam with sparse gradients for tables of >= 50,000 rows). See "
        "`benchmarks/throughput_scan.py`. The load average at the start of each row is in "
        "its cell and the JSON.",
        "",
        _load_note(payload),
        "",
        "| family | model | " + " | ".join(f"{items[s]:,} items" for s in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["size"]: r for r in rows if r["model"] == model}
        family = next(iter(mine.values()))["family"]
        cells = [_our_cell(mine.get(s)) for s in sizes]
        lines.append(f"| {family} | {model} | " + " | ".join(cells) + " |")
    lines += ["", *external_markdown(payload, sizes, items)]
    return "\n".join(lines)


def our_rows(sizes: list[str], models: list[str], args: argparse.Namespace) -> list[dict]:
    """Our rows: :func:`worker` per (size, model), each in its own process."""
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for model in models:
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
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="YoutubeDNN,DSSM,SASRec,ComirecSA")
    ap.add_argument("--sizes", default="ml-100k,toys,100000,1000000")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument(
        "--external",
        choices=["torch-rechub"],
        default=None,
        help="also measure this peer library's DSSM / YoutubeDNN (those in --models)",
    )
    ap.add_argument("--external-timeout", type=float, default=600.0, help="s per peer run")
    ap.add_argument(
        "--external-prep-timeout", type=float, default=420.0, help="s for the peer's data prep"
    )
    ap.add_argument("--external-rss-cap-mb", type=float, default=8192.0)
    ap.add_argument(
        "--render",
        action="store_true",
        help="only rewrite the markdown section from OUT/throughput_scan.json (no measuring)",
    )
    ap.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--write-split", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.steps, args.threads)))
        return
    if args.write_split:
        print(json.dumps(write_size_split(args.write_split[0], Path(args.write_split[1]))))
        return
    if args.render:
        write_markdown(json.loads((args.out / "throughput_scan.json").read_text()), args.out)
        return
    from benchmarks.common import command_line, machine, machine_line

    info = machine()
    sizes, models = args.sizes.split(","), args.models.split(",")
    rows: list[dict[str, Any]] = []
    ext: list[dict[str, Any]] = []
    for size in sizes:  # ours then theirs per size, so that both see about the same load
        rows += our_rows([size], models, args)
        if args.external:
            ext += external_rows([size], models, args)
    payload: dict[str, Any] = {
        "command": command_line("benchmarks.throughput_scan", argv),
        "machine": machine_line(info),
        "rows": rows,
    }
    if args.external:
        payload["external_settings"] = {
            "library": args.external,
            "steps": args.steps,
            "threads": args.threads,
            "timeout": args.external_timeout,
            "prep_timeout": args.external_prep_timeout,
            "rss_cap_mb": args.external_rss_cap_mb,
        }
        payload["external_rows"] = ext
    payload["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput_scan.json").write_text(json.dumps(payload, indent=2) + "\n")
    write_markdown(payload, args.out)


def write_markdown(payload: dict[str, Any], out: Path) -> None:
    """Replace (or append) the section :data:`SECTION` of ``out/throughput.md``."""
    md_path = out / "throughput.md"
    old = md_path.read_text() if md_path.exists() else ""
    if SECTION in old:
        old = old[: old.index(SECTION)].rstrip() + "\n"
    md_path.write_text((old + "\n" if old else "") + markdown(payload))


if __name__ == "__main__":
    main()
