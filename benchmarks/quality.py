"""Quality, speed and memory of every registered model under the protocol, side by side with
Torch-RecHub 0.9.0 and RecBole 1.2.1 trained on the same split in their own virtualenvs and
scored by our metric code.

    python -m benchmarks.quality --data movielens-100k --models all --out benchmarks/results \
        [--external torch-rechub,recbole] [--epochs N] [--data-dir DIR]

Each model trains in its own subprocess (so peak memory is its own). Writes
``OUT/quality.json`` and ``OUT/quality.md`` (the table, the command, the machine).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks.common import (
    RESULTS,
    ROOT,
    command_line,
    fmt,
    machine,
    machine_line,
    peak_rss_self_mb,
    write_results,
)

KS = (10, 20, 50)
REPORTED = ["hit@10", "hit@20", "hit@50", "ndcg@10", "ndcg@20", "ndcg@50", "mrr@10"]
VENVS = {
    "torch-rechub": ROOT / "benchmarks" / ".venvs" / "torch-rechub" / "bin" / "python",
    "recbole": ROOT / "benchmarks" / ".venvs" / "recbole" / "bin" / "python",
}
RUNNERS = {
    "torch-rechub": ROOT / "benchmarks" / "external" / "run_torch_rechub.py",
    "recbole": ROOT / "benchmarks" / "external" / "run_recbole.py",
}
RECBOLE_MODELS = {"GRU4Rec", "NARM", "SASRec", "STAMP", "SINE"}
#: RecBole's epoch caps (early stopping may stop sooner): its 300-epoch default does not fit a
#: session on this CPU (RecBole runs the whole 50-item window for every target), so the
#: MovieLens table's rows used these; the standard benchmark's Toys rows use the same
RECBOLE_EPOCH_CAPS = {"GRU4Rec": 10, "NARM": 10, "SASRec": 10, "SINE": 10, "STAMP": 30}


def peer_caps(
    lib: str,
    model: str,
    recbole_epochs: int | None = None,
    trh_epochs: int | None = None,
    stopping_step: int = 5,
) -> tuple[int | None, list[str]]:
    """A peer run's epoch cap and extra runner arguments: RecBole capped at
    ``recbole_epochs`` or :data:`RECBOLE_EPOCH_CAPS`, early-stopping after ``stopping_step``
    epochs without improvement; Torch-RecHub at ``trh_epochs`` (None: each example's own)."""
    if lib == "recbole":
        return recbole_epochs or RECBOLE_EPOCH_CAPS[model], ["--stopping-step", str(stopping_step)]
    return trh_epochs, []


def _config(args: argparse.Namespace, model: str) -> Any:
    from rechub_core.config import ComponentConfig, DataConfig, RunConfig, TrainConfig

    return RunConfig(
        model=ComponentConfig(model),
        data=DataConfig(source=args.data, data_dir=args.data_dir),
        train=TrainConfig(epochs=args.epochs, seed=args.seed),
    )


def prepared(args: argparse.Namespace) -> tuple[Any, Any]:
    """The interactions and the prepared data of the protocol."""
    from rechub_core.preprocess import prepare
    from rechub_core.runs import load_interactions

    inter = load_interactions(_config(args, "DSSM"))
    return inter, prepare(inter, max_len=50, min_interactions=5)


def write_split(inter: Any, data: Any, folder: Path) -> None:
    """Write the protocol's split in the interchange format of benchmarks/external, and check
    that its targets agree with ours (the tie rule decides which item is last)."""
    ev = inter.events
    ev = ev[ev["user_id"].map(ev["user_id"].value_counts()) >= 5]
    ev = ev.sort_values(["user_id", "timestamp", "item_id"], kind="mergesort")
    users = data.encoders["user_id"].transform(ev["user_id"].to_numpy())
    items = data.encoders["item_id"].transform(ev["item_id"].to_numpy())
    frame = pd.DataFrame({"user": users, "item": items})
    frame["position"] = frame.groupby("user").cumcount()
    n = frame.groupby("user")["item"].transform("size")
    folder.mkdir(parents=True, exist_ok=True)
    frame[frame["position"] < n - 2].to_csv(folder / "train.csv", index=False)
    val = frame[frame["position"] == n - 2][["user", "item"]]
    test = frame[frame["position"] == n - 1][["user", "item"]]
    val.to_csv(folder / "val.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    order = np.argsort(data.test.users["user_id"])
    ours = data.test.target[order]
    if not np.array_equal(test.sort_values("user")["item"].to_numpy(), ours):
        raise SystemExit("the written split's test targets disagree with rechub's protocol")
    if data.user_columns:
        cols = {c: data.test.users[c][order] for c in data.user_columns}
        pd.DataFrame({"user": np.sort(data.test.users["user_id"]), **cols}).to_csv(
            folder / "users.csv", index=False
        )
    if "category" in data.items:
        pd.DataFrame(
            {"item": data.items["item_id"][1:], "category": data.items["category"][1:]}
        ).to_csv(folder / "items.csv", index=False)
    meta = {"n_users": len(ours), "n_items": int(data.n_items), "max_len": int(data.max_len)}
    (folder / "meta.json").write_text(json.dumps(meta) + "\n")


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """Train one of our models (in this process) and measure it."""
    from rechub_core.runs import train_run

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    out = Path(args.work) / "ours" / args.one
    result = train_run(_config(args, args.one), out, verbose=False)
    total = time.perf_counter() - start
    history = result.history
    seconds = [h["seconds"] for h in history]
    eval_seconds = None
    if not args.no_eval_timing:  # a second, timed evaluation from the saved run folder
        eval_start = time.perf_counter()
        from rechub_core.runs import load_run

        loaded = load_run(out)
        loaded.trainer().evaluate(loaded.user_loader())
        eval_seconds = time.perf_counter() - eval_start
    best = json.loads((out / "metrics.json").read_text()).get("best_epoch", -1)
    return {
        "library": "rechub",
        "model": args.one,
        "metrics": result.metrics,
        "mostpop": result.mostpop,
        "epochs": len(history),
        "best_epoch": best if best >= 0 else None,  # 0-based, as the peers' rows
        "seconds_per_epoch": float(np.mean(seconds)),
        "samples_per_second": float(np.mean([h["samples_per_s"] for h in history])),
        "train_seconds": float(sum(seconds)),
        "total_seconds": total,
        "eval_seconds": eval_seconds,
        "peak_rss_mb": peak_rss_self_mb(),
        "error": None,
    }


#: a peer's row is no result when counting ties against the target (instead of for it, the
#: protocol's rule) leaves less than this share of its NDCG@10: its scores collapsed to a few
#: values (Torch-RecHub's GRU4Rec on Toys_and_Games: user vectors (1, 0, ..., 0), NDCG@10
#: 0.1624 with ties for the target, HR@10 = HR@50)
TIE_SHARE_MIN = 0.9


def score_external(out: Path, data: Any) -> tuple[dict[str, float], float]:
    """Score a runner's vectors (or full-sort scores), read once, with our full-ranking
    metrics (the protocol's ties, in the target's favour), and its NDCG@10 with ties counted
    against the target (:func:`rechub_core.metrics.target_ranks`)."""
    from rechub_core.metrics import full_ranking_metrics

    order = np.argsort(data.test.users["user_id"])  # external users are 1..U in id order
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    if (out / "scores_test.npy").exists():
        raw = np.load(out / "scores_test.npy")
        raw[:, 0] = -1e9  # column 0 is the padding id (RecBole writes -inf there); never ranked
        scores = torch.as_tensor(raw)[torch.as_tensor(inv)]
        items = torch.eye(scores.shape[1])  # scores as "vectors" against one-hot items: exact
        users = scores
    else:
        users = torch.as_tensor(np.load(out / "user_test.npy"))[torch.as_tensor(inv)]
        items = torch.as_tensor(np.load(out / "item.npy"))
    t = data.test
    args = (users.float(), items.float(), t.target, t.seen_indptr, t.seen_indices)
    metrics = full_ranking_metrics(*args, ks=KS)
    strict = full_ranking_metrics(*args, ks=KS, ties="pessimistic")["ndcg@10"]
    return metrics, strict


def external_row(lib: str, model: str, out: Path, data: Any) -> dict[str, Any]:
    """The table row of one finished runner output folder (its info.json + vectors/scores)."""
    info = json.loads((out / "info.json").read_text())
    row: dict[str, Any] = {"library": lib, "model": model, "error": info.get("error")}
    for key in (
        "epochs",
        "seconds_per_epoch",
        "samples_per_second",
        "train_seconds",
        "peak_rss_mb",
        "notes",
        "best_epoch",
        "stopped",
    ):
        row[key] = info.get(key)
    if row["error"] is None:
        try:
            row["metrics"], strict = score_external(out, data)
        except Exception as exc:  # e.g. NaN vectors from a diverged run: the row says so
            row["error"] = f"its vectors could not be scored: {exc}"
            return row
        row["ndcg@10_ties_against"] = strict
        if strict < TIE_SHARE_MIN * row["metrics"]["ndcg@10"]:
            row["error"] = (
                f"collapsed scores, not a result: NDCG@10 {row['metrics']['ndcg@10']:.4f} with "
                f"ties for the target, {strict:.4f} with ties against it"
            )
    return row


def run_external(
    lib: str,
    model: str,
    split: Path,
    work: Path,
    epochs: int | None,
    seed: int,
    data: Any,
    threads: int,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Train the other library's model in its venv and score it with our metrics (``extra``:
    more runner arguments).

    A finished output folder under ``work/lib/model`` (same split) is scored again, not
    retrained; delete it (or pass ``--rerun-external``) to train anew."""
    out = work / lib / model
    done = (out / "info.json").exists()  # finished, or crashed with its error recorded
    if not done:
        out.mkdir(parents=True, exist_ok=True)
        cmd = [str(VENVS[lib]), str(RUNNERS[lib]), str(split), str(out), "--model", model]
        cmd += ["--seed", str(seed), "--threads", str(threads)]
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        cmd += extra or []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if not (out / "info.json").exists():
            return {"library": lib, "model": model, "error": (proc.stderr or proc.stdout)[-400:]}
    return external_row(lib, model, out, data)


def cached_external(results: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Peers' rows cached by earlier ``--external`` runs: ``results/external.json``."""
    path = results / "external.json"
    if not path.exists():
        return {}
    return {(r["library"], r["model"]): r for r in json.loads(path.read_text())["rows"]}


def markdown(
    rows: list[dict[str, Any]], command: str, mostpop: dict[str, float], info: dict[str, Any]
) -> str:
    """The results table: ours next to each library's, with ratios ours / theirs."""
    ours = {r["model"]: r for r in rows if r["library"] == "rechub"}
    lines = [
        "# Quality, speed and memory on MovieLens-100K (protocol of DESIGN.md §4, full ranking)",
        "",
        f"Command: `{command}`  ",
        machine_line(info),
        "",
        "| library | model | "
        + " | ".join(REPORTED)
        + " | epochs | s/epoch | samples/s | peak MB | eval s | NDCG@10 ours/theirs |",
        "|---" * (len(REPORTED) + 8) + "|",
        "| MostPop | - | "
        + " | ".join(fmt(mostpop.get(k), 4) for k in REPORTED)
        + " | - | - | - | - | - | - |",
    ]
    for r in rows:
        m = r.get("metrics") or {}
        ratio = "-"
        if (
            r["library"] != "rechub"
            and m
            and r["model"] in ours
            and ours[r["model"]].get("metrics")
        ):
            ratio = fmt(ours[r["model"]]["metrics"]["ndcg@10"] / max(m["ndcg@10"], 1e-9), 2)
        if r.get("error"):
            cells = [f"error: {str(r['error']).splitlines()[-1][:80]}"] + ["-"] * (
                len(REPORTED) - 1
            )
        else:
            cells = [fmt(m.get(k), 4) for k in REPORTED]
        epochs = fmt(r.get("epochs"))
        if r.get("best_epoch") is not None:  # early-stopping peers: which epoch was scored
            epochs += f" (best {r['best_epoch'] + 1})"
        if r.get("stopped"):
            epochs += ", stopped (time)"
        lines.append(
            f"| {r['library']} | {r['model']} | "
            + " | ".join(cells)
            + f" | {epochs} | {fmt(r.get('seconds_per_epoch'), 1)} | "
            f"{fmt(r.get('samples_per_second'), 0)} | {fmt(r.get('peak_rss_mb'), 0)} | "
            f"{fmt(r.get('eval_seconds'), 2)} | {ratio} |"
        )
    notes = RESULTS / "quality_notes.md"
    if notes.exists():  # hand-written context for the table, kept next to it
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="movielens-100k")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--models", default="all", help="'all', comma-separated names, or 'none'")
    ap.add_argument("--external", default="", help="comma-separated: torch-rechub, recbole")
    ap.add_argument(
        "--epochs", type=int, default=None, help="default: each model's early-stopping budget"
    )
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--threads", type=int, default=2, help="torch threads per model")
    ap.add_argument("--jobs", type=int, default=1, help="models trained at once")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--work", default="benchmarks/.work/quality")
    ap.add_argument(
        "--rerun-external", action="store_true", help="train peers again, ignoring the cache"
    )
    ap.add_argument(
        "--keep-others",
        action="store_true",
        help="keep OUT/quality.json's rows of the models not named in --models",
    )
    ap.add_argument(
        "--external-done-only",
        action="store_true",
        help="only score peers' runs already finished under --work (train none)",
    )
    ap.add_argument("--trh-epochs", type=int, default=None, help="default: each example's")
    ap.add_argument(
        "--recbole-epochs", type=int, default=None, help="cap (default: RECBOLE_EPOCH_CAPS)"
    )
    ap.add_argument(
        "--recbole-stopping-step",
        type=int,
        default=5,
        help="RecBole's early-stopping patience in epochs (its default 10; the cached rows used 5)",
    )
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-eval-timing", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args)))
        return
    from rechub_core.plugins import list_components

    if args.models == "all":
        models = list_components("model")
    else:  # "none" with --keep-others: re-tabulate (and score peers) without training ours
        models = [] if args.models == "none" else args.models.split(",")
    info = machine()
    inter, data = prepared(args)
    rows: list[dict[str, Any]] = []
    passthrough = [
        "--data",
        args.data,
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
        "--work",
        args.work,
    ]
    if args.data_dir:
        passthrough += ["--data-dir", args.data_dir]
    if args.epochs:
        passthrough += ["--epochs", str(args.epochs)]

    def train_ours(model: str) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.quality", "--one", model, *passthrough],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            row = {"library": "rechub", "model": model, "error": proc.stderr[-400:]}
        found = row.get("metrics", {}).get("ndcg@10", row.get("error"))
        print(f"rechub {model}: {found}", file=sys.stderr)
        return row

    # --jobs N trains N models at once (each in its own process, --threads each)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows += list(pool.map(train_ours, models))
    out = Path(args.out)
    earlier_command = None
    if args.keep_others and (out / "quality.json").exists():  # earlier rows of other models
        before = json.loads((out / "quality.json").read_text())
        earlier, earlier_command = before["rows"], before.get("command")
        rows += [r for r in earlier if r["library"] == "rechub" and r["model"] not in models]
        rows.sort(key=lambda r: r["model"])
        models = sorted({*models, *(r["model"] for r in rows)})
    cache = cached_external(out)
    externals = [e for e in args.external.split(",") if e]
    if externals:
        split = Path(args.work) / "split"
        write_split(inter, data, split)
        for lib in externals:
            for model in models:
                if lib == "recbole" and model not in RECBOLE_MODELS:
                    continue
                if (lib, model) in cache and not args.rerun_external:
                    continue
                if (
                    args.external_done_only
                    and not (Path(args.work) / lib / model / "info.json").exists()
                ):
                    continue
                if args.rerun_external:
                    shutil.rmtree(Path(args.work) / lib / model, ignore_errors=True)
                epochs, extra = peer_caps(
                    lib, model, args.recbole_epochs, args.trh_epochs, args.recbole_stopping_step
                )
                cache[(lib, model)] = run_external(
                    lib, model, split, Path(args.work), epochs, args.seed, data, args.threads, extra
                )
                found = cache[(lib, model)].get("metrics", {}).get("ndcg@10")
                print(f"{lib} {model}: {found or cache[(lib, model)]['error']}", file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        cached = sorted(cache.values(), key=lambda r: (r["library"], r["model"]))
        (out / "external.json").write_text(
            json.dumps({"split": "protocol of DESIGN.md §4", "rows": cached}, indent=2) + "\n"
        )
    rows += [r for (_, model), r in sorted(cache.items()) if model in models]
    from rechub_core.metrics import most_popular_metrics

    t = data.test
    mostpop = most_popular_metrics(data.item_counts, t.target, t.seen_indptr, t.seen_indices, ks=KS)
    command = command_line("benchmarks.quality", argv)
    if earlier_command:  # the training command first, then how the table was re-made
        if command not in earlier_command:
            command = f"{earlier_command}`, then `{command}"
        else:
            command = earlier_command
    table = markdown(rows, command, mostpop, info)
    payload = {"command": command, "machine": info, "mostpop": mostpop, "rows": rows}
    write_results("quality", payload, table, out)
    print(table)


if __name__ == "__main__":
    main()
