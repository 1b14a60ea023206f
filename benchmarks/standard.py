"""The standard benchmark (issue #15): every registered model x {MovieLens-100K, Amazon Sports,
Amazon Toys, Yelp}, each trained as ``rechub train --model NAME`` trains it (its defaults, early
stopping on validation NDCG@10), plus MostPop and the published references (not re-run).

    python -m benchmarks.standard [--only ml-100k,sports,toys,yelp] [--models all|A,B|none] \\
        [--resume | --keep] [--epochs N] [--seed 1] [--threads 1] [--jobs 1] [--name standard] \\
        [--external torch-rechub,recbole]

Each (data set, model) trains in its own process (``python -m benchmarks.quality --one``) and
its row is written to ``OUT/NAME.json`` and ``OUT/NAME.md`` as soon as it finishes, so an
interrupted run keeps what it finished. ``--keep`` keeps the earlier rows of the pairs not
re-run; ``--resume`` (implies ``--keep``) trains only the pairs without a full row (missing,
failed, or a smoke row from ``--epochs``). Rows trained with ``--epochs N`` are marked as smoke
runs, not results. ``--merge SRC.json`` trains nothing: it takes SRC's rows of the ``--only``
data sets (and ``--models``) into OUT/NAME.json in place of the same cells, with SRC's commands
and clocks, for runs made elsewhere (a separate ``--out``, beside another run). The markdown
lists the cells still missing, and its Time section each
command's own clock from start to end (``command_runs``). With ``--jobs 2`` the cells start
longest first, by the wall times of the committed ``results/standard.json`` and of OUT/NAME.json.

Data: ``DATA_ROOT/ml-100k`` and ``DATA_ROOT/amazon-s3rec/{Sports_and_Outdoors,Toys_and_Games,
Yelp}.txt`` (``--data-root``, default ``$RECHUB_DATA_DIR`` or ``../shared/data``). Peers
(``--external``) train on Toys only, through quality.py's runners and their caps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS,
    command_line,
    fmt,
    git_commit,
    machine,
    machine_line,
    write_results,
)

#: key -> (title, --data source relative to the data root, --data-dir relative to it or None)
DATASETS: dict[str, tuple[str, str, str | None]] = {
    "ml-100k": ("MovieLens-100K", "movielens-100k", "ml-100k"),
    "sports": ("Amazon Sports_and_Outdoors", "amazon-s3rec/Sports_and_Outdoors.txt", None),
    "toys": ("Amazon Toys_and_Games", "amazon-s3rec/Toys_and_Games.txt", None),
    "yelp": ("Yelp", "amazon-s3rec/Yelp.txt", None),
}
EXTERNAL_DATA = "toys"  # the data set the peers' rows are trained on (issue #15)
COLUMNS = ["ndcg@10", "hit@10", "ndcg@50", "hit@50"]
HEADERS = ["NDCG@10", "HR@10", "NDCG@50", "HR@50"]
#: published full-ranking, leave-one-out, seen-excluded figures: (who, NDCG@10, HR@10); see
#: ../shared/data/README.md (eSASRec benchmark, github blondered/transformer_benchmark)
PUBLISHED: dict[str, list[tuple[str, float, float]]] = {
    "sports": [
        ("SASRec, sampled softmax (eSASRec benchmark, tuned per data set)", 0.0314, 0.0569),
        ("eSASRec (eSASRec benchmark, tuned per data set)", 0.0323, 0.0560),
        ("SASRec, original (as reported by papers)", 0.0192, 0.0350),
    ],
    "toys": [
        ("SASRec, sampled softmax (eSASRec benchmark, tuned per data set)", 0.0580, 0.0970),
        ("eSASRec (eSASRec benchmark, tuned per data set)", 0.0538, 0.0939),
    ],
}


def data_args(key: str, root: Path) -> list[str]:
    """The ``--data`` (and ``--data-dir``) arguments of data set ``key`` under ``root``."""
    _, source, data_dir = DATASETS[key]
    if data_dir is not None:
        return ["--data", source, "--data-dir", str(root / data_dir)]
    return ["--data", str(root / source)]


def quality_args(key: str, root: Path) -> argparse.Namespace:
    """quality.py's arguments for data set ``key`` (to reuse its data loading)."""
    _, source, data_dir = DATASETS[key]
    if data_dir is not None:
        return argparse.Namespace(data=source, data_dir=str(root / data_dir), epochs=None, seed=1)
    return argparse.Namespace(data=str(root / source), data_dir=None, epochs=None, seed=1)


def mostpop_row(key: str, root: Path) -> dict[str, Any]:
    """MostPop's test metrics on data set ``key`` and the size of the prepared data."""
    from benchmarks.quality import KS, prepared
    from rechub_core.metrics import most_popular_metrics

    start = time.perf_counter()
    _, data = prepared(quality_args(key, root))
    t = data.test
    metrics = most_popular_metrics(data.item_counts, t.target, t.seen_indptr, t.seen_indices, ks=KS)
    return {
        "metrics": metrics,
        "users": len(t.target),
        "items": int(data.n_items),  # real items (data.items has the padding row 0 too)
        "seconds": time.perf_counter() - start,
    }


def train_row(key: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``model`` on data set ``key`` in its own process, as ``rechub train`` does."""
    cmd = [sys.executable, "-m", "benchmarks.quality", "--one", model, "--no-eval-timing"]
    cmd += data_args(key, Path(args.data_root))
    cmd += ["--seed", str(args.seed), "--threads", str(args.threads)]
    cmd += ["--work", str(Path(args.work) / key)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    base = {"data": key, "library": "rechub", "model": model, "seed": args.seed}
    base |= {"epochs_cap": args.epochs, "wall_seconds": wall, "date": time.strftime("%F %R %Z")}
    base |= {"commit": git_commit(), "load_average": [round(x, 2) for x in os.getloadavg()]}
    if proc.returncode != 0:
        return base | {"error": (proc.stderr or proc.stdout)[-400:]}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row.pop("mostpop", None)  # kept once per data set
    return row | base


def external_rows(args: argparse.Namespace, models: list[str]) -> list[dict[str, Any]]:
    """Torch-RecHub / RecBole rows on Toys through quality.py's runners (their own caps)."""
    from benchmarks.quality import (
        RECBOLE_MODELS,
        peer_caps,
        prepared,
        run_external,
        write_split,
    )

    root = Path(args.data_root)
    inter, data = prepared(quality_args(EXTERNAL_DATA, root))
    work = Path(args.work) / EXTERNAL_DATA
    write_split(inter, data, work / "split")
    rows = []
    for lib in [e for e in args.external.split(",") if e]:
        for model in models:
            if lib == "recbole" and model not in RECBOLE_MODELS:
                continue
            cap, extra = peer_caps(lib, model)  # RecBole: its caps and patience 5
            row = run_external(
                lib, model, work / "split", work, cap, args.seed, data, args.threads, extra
            )
            rows.append(row | {"data": EXTERNAL_DATA, "seed": args.seed, "epochs_cap": None})
            print(f"{lib} {model}: {row.get('metrics', row.get('error'))}", file=sys.stderr)
    return rows


def is_full(row: dict[str, Any]) -> bool:
    """A finished row trained with the model's own epoch budget (not a smoke run)."""
    return not row.get("error") and not row.get("epochs_cap")


def full_rows(payload: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Our full rows (:func:`is_full`) by ``(data set, model)``."""
    return {
        (r["data"], r["model"]): r
        for r in payload["rows"]
        if r["library"] == "rechub" and is_full(r)
    }


def _cells(row: dict[str, Any], mostpop: dict[str, float] | None) -> list[str]:
    m = row.get("metrics") or {}
    cells = [fmt(m.get(k), 4) for k in COLUMNS]
    ratio = "-"
    if m and mostpop and mostpop.get("ndcg@10"):
        ratio = fmt(m["ndcg@10"] / mostpop["ndcg@10"], 2)
    best = row.get("best_epoch")
    wall = row.get("wall_seconds") or row.get("train_seconds")
    best_cell = "-" if best is None else str(best + 1)
    epochs_cells = [best_cell, fmt(row.get("epochs")), fmt(wall, 0)]
    return [*cells, ratio, *epochs_cells, fmt(row.get("seconds_per_epoch"), 1)]


def _note(row: dict[str, Any], seed: int) -> str:
    notes = []
    if row.get("epochs_cap"):
        notes.append(f"**smoke run, --epochs {row['epochs_cap']}: not a result**")
    if row.get("seed") != seed:
        notes.append(f"seed {row.get('seed')}")
    if row.get("date"):
        notes.append(f"{row['date']}, commit {row.get('commit', '?')}")
    return "; ".join(notes)


def _error_line(row: dict[str, Any], width: int) -> str:
    """The last line of a failed row's error (a traceback's message), at most ``width``
    characters, for a table cell."""
    return str(row["error"]).strip().splitlines()[-1][:width]


def data_table(key: str, payload: dict[str, Any], models: list[str]) -> list[str]:
    """The markdown section of data set ``key``: MostPop, our models, peers, published."""
    title = DATASETS[key][0]
    pop = payload["mostpop"].get(key)
    size = f" ({pop['users']:,} users, {pop['items']:,} items)" if pop else ""
    head = [*HEADERS, "NDCG@10 / MostPop", "best epoch", "epochs run", "wall s", "s/epoch"]
    lines = [
        f"## {title}{size}",
        "",
        "| library | model | " + " | ".join(head) + " | note |",
        "|---" * (len(head) + 3) + "|",
    ]
    pop_metrics = pop["metrics"] if pop else None
    if pop:
        cells = [fmt(pop["metrics"].get(k), 4) for k in COLUMNS]
        lines.append("| - | MostPop | " + " | ".join(cells) + " | 1.00 | - | - | - | - | |")
    else:
        lines.append("| - | MostPop | " + " | ".join(["missing"] + ["-"] * 8) + " | |")
    rows = {(r["library"], r["model"]): r for r in payload["rows"] if r["data"] == key}
    seed = payload["seed"]
    for model in models:
        r = rows.get(("rechub", model))
        if r is None:
            lines.append(f"| rechub | {model} | missing" + " | -" * 8 + " | |")
        elif r.get("error"):
            lines.append(f"| rechub | {model} | error: {_error_line(r, 80)}" + " | -" * 8 + " | |")
        else:
            cells = _cells(r, pop_metrics)
            lines.append(f"| rechub | {model} | " + " | ".join(cells) + f" | {_note(r, seed)} |")
    for (lib, model), r in sorted(rows.items()):
        if lib == "rechub":
            continue
        note = "peer, its runner's cap"
        if r.get("error"):
            cells = ["error"] + ["-"] * 8
            note += f"; {_error_line(r, 160)}"
        else:
            cells = _cells(r, pop_metrics)
        lines.append(f"| {lib} | {model} | " + " | ".join(cells) + f" | {note} |")
    for who, ndcg, hr in PUBLISHED.get(key, []):
        cells = [fmt(ndcg, 4), fmt(hr, 4), "-", "-", "-", "-", "-", "-", "-"]
        lines.append(f"| published | {who} | " + " | ".join(cells) + " | published (not re-run) |")
    return [*lines, ""]


def summary_table(payload: dict[str, Any], models: list[str]) -> list[str]:
    """One line per model, one column per data set: test NDCG@10 (x MostPop's); "-" where the
    cell has no full row (missing, failed or a smoke run). The README copies this table."""
    keys = list(DATASETS)
    full = {
        pair: r["metrics"]["ndcg@10"] for pair, r in full_rows(payload).items() if r.get("metrics")
    }
    pops = {k: payload["mostpop"].get(k, {}).get("metrics", {}).get("ndcg@10") for k in keys}
    lines = [
        "| model | " + " | ".join(DATASETS[k][0] for k in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
        "| MostPop | " + " | ".join(fmt(pops[k], 4) for k in keys) + " |",
    ]
    for model in models:
        cells = []
        for k in keys:
            value = full.get((k, model))
            if value is None:
                cells.append("-")
            else:
                ratio = f" ({value / pops[k]:.1f}x)" if pops[k] else ""
                cells.append(f"{value:.4f}{ratio}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    published: dict[str, dict[str, float]] = {}
    for key in keys:
        for who, ndcg, _ in PUBLISHED.get(key, []):
            published.setdefault(who, {})[key] = ndcg
    for who, by_key in published.items():
        cells = [fmt(by_key.get(k), 4) if k in by_key else "" for k in keys]
        lines.append(f"| published (not re-run): {who} | " + " | ".join(cells) + " |")
    return lines


def missing_cells(payload: dict[str, Any], models: list[str]) -> list[str]:
    """``data/model`` pairs without a full row (missing, failed or smoke only)."""
    full = full_rows(payload)
    out = [f"{k}/{m}" for k in DATASETS for m in models if (k, m) not in full]
    out += [f"{k}/MostPop" for k in DATASETS if k not in payload["mostpop"]]
    return out


def two_job_hours(seconds: list[float], jobs: int = 2) -> float:
    """Hours until ``jobs`` workers finish cells of the given wall ``seconds`` when each free
    worker takes the longest cell left (longest-processing-time-first; what ``--jobs`` does
    with known cell times, :func:`schedule`)."""
    workers = [0.0] * max(1, jobs)
    for s in sorted(seconds, reverse=True):
        workers[workers.index(min(workers))] += s
    return max(workers) / 3600


def schedule(pairs: list[tuple[str, str]], rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``pairs`` longest first by their earlier rows' wall seconds (unknown ones first, larger
    data sets before smaller): with ``--jobs 2`` the last cells to start are the short ones."""
    wall = {
        (r["data"], r["model"]): r.get("wall_seconds") or 0.0
        for r in rows
        if r["library"] == "rechub" and is_full(r)
    }
    size_order = {key: i for i, key in enumerate(("yelp", "sports", "toys", "ml-100k"))}

    def key(pair: tuple[str, str]) -> tuple[int, float, int]:
        known = pair in wall
        return (int(known), -wall.get(pair, 0.0), size_order.get(pair[0], len(size_order)))

    return sorted(pairs, key=key)


def time_summary(payload: dict[str, Any], models: list[str]) -> list[str]:
    """Where the time goes: each data set's summed cell wall time, the total, the machine load
    the cells ran at, and how long two trainings at a time take over these cell times."""
    full = {pair: r for pair, r in full_rows(payload).items() if pair[1] in models}
    if not full:
        return []
    lines = ["## Time", "", "| data set | cells | summed wall time (h) | longest cell |"]
    lines.append("|---|---|---|---|")
    for key in DATASETS:
        cells = [(r.get("wall_seconds") or 0.0, m) for (k, m), r in full.items() if k == key]
        if cells:
            longest = max(cells)
            total = sum(s for s, _ in cells) / 3600
            lines.append(
                f"| {DATASETS[key][0]} | {len(cells)} | {total:.2f} | "
                f"{longest[1]} ({longest[0] / 60:.0f} min) |"
            )
    seconds = [r.get("wall_seconds") or 0.0 for r in full.values()]
    loads = [r["load_average"][0] for r in full.values() if r.get("load_average")]
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "not recorded"
    lines += [
        f"| all | {len(seconds)} | {sum(seconds) / 3600:.2f} | |",
        "",
        f"Each cell's wall time was measured as it ran (1-minute load average at its end "
        f"{load}; two trainings at a time on 2 cores give about 2). Scheduled two at a time "
        f"(`--jobs 2`, longest first), these cell times end after "
        f"**{two_job_hours(seconds):.2f} h** (computed from the rows, which may come from "
        "several commands: see the list above).",
        "",
    ]
    for run in payload.get("command_runs", []):
        lines += [
            f"Measured start to end: `{run['command']}` trained {run['cells']} cells, "
            f"{run['jobs']} at a time, in **{run['seconds'] / 3600:.2f} h** (started "
            f"{run['started']}, commit {run['commit']}).",
            "",
        ]
    return lines


def markdown(payload: dict[str, Any], models: list[str]) -> str:
    """The whole results file: how it was made, one table per data set, what is missing."""
    lines = [
        "# Standard benchmark: MovieLens-100K, Amazon Sports, Amazon Toys, Yelp (issue #15)",
        "",
        "Protocol of DESIGN.md §4: leave-one-out (last item test, second last validation), full",
        "ranking over all items with the user's seen items excluded; HR = hit rate (= Recall",
        "under leave-one-out). Each model as `rechub train --model NAME` trains it: its",
        "defaults, early stopping on validation NDCG@10, the best epoch's weights tested;",
        f"seed {payload['seed']}, 1 torch thread unless a row says otherwise. Best epoch is",
        "1-based; wall s is the whole training process (data preparation, training,",
        "validation, test evaluation, writing the run folder). Each row's note gives when and",
        "at which commit it was trained; the machine line is the latest command's.",
        "",
        "Commands (in order):",
        "",
        *[f"- `{c}`" for c in payload["commands"]],
        "",
        machine_line(payload["machine"]),
        "",
        "## Test NDCG@10 by data set (x MostPop)",
        "",
        *summary_table(payload, models),
        "",
    ]
    for key in DATASETS:
        lines += data_table(key, payload, models)
    lines += time_summary(payload, models)
    missing = missing_cells(payload, models)
    lines.append("## Missing cells")
    lines.append("")
    if missing:
        lines.append(
            f"{len(missing)} (data/model) cells have no full row yet; fill them with "
            "`python -m benchmarks.standard --resume`:"
        )
        lines += ["", ", ".join(missing)]
    else:
        lines.append("None: every cell has a full row.")
    return "\n".join(lines) + "\n"


def merge_results(
    base: dict[str, Any], src: dict[str, Any], keys: list[str], models: list[str] | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``base`` with the rows of ``src`` on data sets ``keys`` (and models ``models``; None:
    all) in place of its rows of the same (data, library, model), and ``src``'s MostPop of
    those data sets; ``src``'s commands and command clocks not yet in ``base`` are appended
    and its machine line becomes the latest. Returns ``(merged payload, rows taken)``; a
    selection that takes no row is an error (a mistyped name would otherwise merge nothing)."""
    taken = [
        r
        for r in src.get("rows", [])
        if r["data"] in keys and (models is None or r["model"] in models)
    ]
    if not taken:
        raise SystemExit(
            f"--merge: the source has no rows for data {keys} and models {models or 'all'}"
        )

    def key(row: dict[str, Any]) -> tuple[str, str, str]:
        return (row["data"], row["library"], row["model"])

    replaced = {key(r) for r in taken}
    merged = dict(base)
    merged["rows"] = [r for r in base.get("rows", []) if key(r) not in replaced] + taken
    merged["mostpop"] = {
        **base.get("mostpop", {}),
        **{k: v for k, v in src.get("mostpop", {}).items() if k in keys},
    }
    merged["commands"] = list(base.get("commands", [])) + [
        c for c in src.get("commands", []) if c not in base.get("commands", [])
    ]
    merged["command_runs"] = list(base.get("command_runs", [])) + [
        c for c in src.get("command_runs", []) if c not in base.get("command_runs", [])
    ]
    merged["machine"] = src.get("machine", base.get("machine"))
    return merged, taken


def load_earlier(out: Path, name: str) -> dict[str, Any] | None:
    """The earlier ``OUT/NAME.json``, if any."""
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--only",
        default="all",
        help="data sets: 'all' or comma-separated keys of " + ", ".join(DATASETS),
    )
    ap.add_argument("--models", default="all", help="'all', comma-separated names, or 'none'")
    ap.add_argument("--keep", action="store_true", help="keep earlier rows of pairs not re-run")
    ap.add_argument(
        "--resume", action="store_true", help="--keep, and train only pairs without a full row"
    )
    ap.add_argument("--epochs", type=int, default=None, help="cap (marks rows as smoke runs)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per model")
    ap.add_argument("--jobs", type=int, default=1, help="models trained at once")
    ap.add_argument("--external", default="", help="peers on Toys: torch-rechub,recbole")
    ap.add_argument("--data-root", default=None, help="default: $RECHUB_DATA_DIR or ../shared/data")
    ap.add_argument("--name", default="standard", help="results file name (OUT/NAME.json, .md)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--work", default="benchmarks/.work/standard")
    ap.add_argument(
        "--merge",
        type=Path,
        default=None,
        help="train nothing: take the rows of this results JSON (those of --only/--models) "
        "into OUT/NAME.json",
    )
    args = ap.parse_args(argv)
    if args.merge and (args.keep or args.resume or args.external or args.epochs):
        ap.error("--merge trains nothing: it takes no --keep, --resume, --external or --epochs")
    if args.name == "quality":
        ap.error("--name quality would overwrite quality.py's MovieLens table; pick another")
    if args.data_root is None:
        from rechub_core.datasets import default_data_dir

        args.data_root = str(default_data_dir())
    args.keep = args.keep or args.resume
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from rechub_core.plugins import list_components

    keys = list(DATASETS) if args.only == "all" else args.only.split(",")
    unknown = [k for k in keys if k not in DATASETS]
    if unknown:
        raise SystemExit(f"--only {unknown}: unknown data set; use {', '.join(DATASETS)}")
    all_models = list_components("model")
    if args.models in ("all", "none"):
        models = all_models if args.models == "all" else []
    else:
        models = args.models.split(",")
    out = Path(args.out)
    command = command_line("benchmarks.standard", argv)
    if args.merge:
        base = load_earlier(out, args.name)
        if base is None:
            raise SystemExit(
                f"--merge: {out / args.name}.json does not exist; nothing to merge into"
            )
        src = json.loads(args.merge.read_text())
        chosen = None if args.models == "all" else models
        payload, taken = merge_results(base, src, keys, chosen)
        payload["commands"].append(command)
        write_results(args.name, payload, markdown(payload, sorted({*all_models, *models})), out)
        for r in taken:
            metric = r.get("metrics", {}).get("ndcg@10", r.get("error"))
            print(f"merged {r['data']} {r['library']} {r['model']}: {metric}", file=sys.stderr)
        return
    earlier = load_earlier(out, args.name) if args.keep else None
    started = time.time()
    payload: dict[str, Any] = {
        "seed": args.seed,
        "commands": [*(earlier or {}).get("commands", []), command],
        "command_runs": (earlier or {}).get("command_runs", []),
        "machine": machine(),
        "mostpop": (earlier or {}).get("mostpop", {}),
        "rows": (earlier or {}).get("rows", []),
    }
    table_models = sorted({*all_models, *models})
    lock = threading.Lock()

    def save() -> None:
        with lock:
            write_results(args.name, payload, markdown(payload, table_models), out)

    for key in keys:
        payload["mostpop"][key] = mostpop_row(key, Path(args.data_root))
        print(
            f"MostPop {key}: {payload['mostpop'][key]['metrics']['ndcg@10']:.4f}", file=sys.stderr
        )
    save()
    pairs = [(k, m) for k in keys for m in models]
    if args.resume:
        done = full_rows(payload)
        pairs = [p for p in pairs if p not in done]  # missing, failed or smoke-only cells
    if args.jobs > 1:  # times of earlier rows: the committed table's, then this file's
        committed = load_earlier(RESULTS, "standard") or {}
        pairs = schedule(pairs, [*committed.get("rows", []), *payload["rows"]])

    def run(pair: tuple[str, str]) -> None:
        row = train_row(*pair, args)
        with lock:
            payload["rows"] = [
                r
                for r in payload["rows"]
                if (r["data"], r["library"], r["model"]) != (pair[0], "rechub", pair[1])
            ] + [row]
        print(
            f"rechub {pair}: {row.get('metrics', {}).get('ndcg@10', row.get('error'))}",
            file=sys.stderr,
        )
        save()

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(run, pairs))
    if args.external:
        peers = external_rows(args, models)
        done_peers = {(r["library"], r["model"]) for r in peers}
        payload["rows"] = [
            r
            for r in payload["rows"]
            if not (r["data"] == EXTERNAL_DATA and (r["library"], r["model"]) in done_peers)
        ] + peers
        save()
    if pairs or args.external:  # the whole command's clock, start to end
        payload["command_runs"].append(
            {
                "command": command,
                "started": time.strftime("%F %R %Z", time.localtime(started)),
                "seconds": time.time() - started,
                "cells": len(pairs),
                "jobs": args.jobs,
                "commit": git_commit(),
            }
        )
        save()
    print(markdown(payload, table_models))


if __name__ == "__main__":
    main()
