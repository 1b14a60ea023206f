"""One timed ``rechub train``-equivalent run for ``benchmarks.scale toys``, in its own process.

    python benchmarks/scale_worker.py --code new|old --model SASRec --data FILE --epochs 3 \
        --threads 1 --out result.json [--old-root /tmp/old]

``--code old`` runs the code of another checkout (``--old-root``, e.g. a ``git worktree`` of
commit f2aae86): the editable install's import hook for ``rechub_core`` is removed and the old
checkout's core and plugin folders go first on ``sys.path``. The old code reads CSV logs only,
so the parent passes it a CSV of the same interactions (``user_id,item_id,timestamp`` with the
position as the time). The model trains with its ``train_defaults`` (as ``rechub train --model
NAME --epochs E`` does), early stopping off, validation every epoch. ``--threads 0`` leaves the
thread count to each code's default, as ``rechub train`` without ``--threads`` does: torch's
(one per core) for the old code, the auto rule of :mod:`rechub_core.threads` for the new.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _use_old_code(root: Path) -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in type(f).__module__]
    for sub in (
        "rechub_plugins_multiinterest/src",
        "rechub_plugins_seq/src",
        "plugins/rechub_plugins_dssm/src",
        ".",
    ):
        sys.path.insert(0, str(root / sub))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", choices=("new", "old"), required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument(
        "--threads", type=int, default=1, help="0: the code's own default (torch's / auto)"
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--old-root", type=Path, default=None)
    ap.add_argument("--patience", type=int, default=0, help="0: no early stopping")
    args = ap.parse_args()
    if args.code == "old":
        _use_old_code(args.old_root)
    import tempfile

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import rechub_core
    from rechub_core import datasets
    from rechub_core.data import loaders_from_prepared
    from rechub_core.plugins import get_spec
    from rechub_core.preprocess import prepare
    from rechub_core.runs import build_model, build_trainer, default_settings
    from rechub_core.schema import DataSchema

    start = time.perf_counter()
    if args.data.suffix == ".txt":
        inter = datasets.load_sequence_file(args.data)  # type: ignore[attr-defined]
    else:
        inter = datasets.load_interactions_file(args.data)
    data = prepare(inter, 50, 5)
    prep_s = time.perf_counter() - start
    spec = get_spec("model", args.model)
    settings = default_settings(spec, epochs=args.epochs)
    if args.patience:
        import attrs

        settings = attrs.evolve(settings, patience=args.patience)
    torch.manual_seed(2022)
    model = build_model(spec, DataSchema.from_prepared(data), {})
    train, val, test = loaders_from_prepared(data, settings.batch_size, 2022)
    extra: dict[str, object] = {}
    if args.code == "new":  # the old code has no threads setting: torch's default or the arg
        extra["threads"] = args.threads or "auto"
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(model, settings, tmp, seed=2022, verbose=False, **extra)
        if args.threads:
            torch.set_num_threads(args.threads)
        start = time.perf_counter()
        history = trainer.fit(train, val)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        metrics = trainer.evaluate(test)
        eval_s = time.perf_counter() - start
    result = {
        "code": args.code,
        "code_root": str(Path(rechub_core.__file__).resolve().parent.parent),
        "model": args.model,
        "threads": torch.get_num_threads(),
        "sampler": settings.sampler,
        "loss": settings.loss,
        "prep_s": prep_s,
        "fit_s": fit_s,
        "epochs": len(history),
        "train_epoch_s": [h["seconds"] for h in history],
        "val_ndcg@10": [h.get("val_ndcg@10") for h in history],
        "best_epoch": trainer.best_epoch,
        "test_ndcg@10": metrics["ndcg@10"],
        "test_eval_s": eval_s,
        "positives_per_s": [h["samples_per_s"] for h in history],
        "load_avg": os.getloadavg(),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
