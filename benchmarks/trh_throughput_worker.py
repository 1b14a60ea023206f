#!/usr/bin/env python3
"""Training throughput of Torch-RecHub 0.9.0's ``MatchTrainer`` (run in ITS virtualenv).

    benchmarks/.venvs/torch-rechub/bin/python benchmarks/trh_throughput_worker.py SPLIT \
        --model DSSM [--threads 2,1] [--warmup-steps 3] [--steps 0]

``SPLIT`` is a split folder in the interchange format of ``benchmarks/external`` (written by
``benchmarks/throughput.py``). The training data, model and trainer are built exactly as
``benchmarks/external/run_torch_rechub.py`` builds them for the same model (its ``EXAMPLE``
settings and ``load_split`` are imported from there): train + val interactions with
``timestamp`` = position -> ``generate_seq_feature_match(sample_method=1, mode, neg_ratio as in
the example)`` -> ``gen_model_input(seq_max_len=50)`` -> ``MatchDataGenerator`` ->
``DataLoader(batch_size as in the example, shuffle=True, num_workers=0)`` -> the example's
model -> ``MatchTrainer(mode, Adam, lr / weight_decay as in the example)``.

Timing, for each of ``--threads`` (torch thread counts, e.g. ``2,1``), with a fresh model and
trainer: ``trainer.train_one_epoch`` over ``--warmup-steps`` batches (not timed), then
``trainer.train_one_epoch`` over ``--steps`` batches (0: one full epoch), timed with
``perf_counter``; the batches are counted on the way (rows, and positives = rows with label 1
in point-wise mode 0, every row otherwise). Prints one JSON line; an exception (SASRec) is
recorded in ``error`` with the last traceback lines. ``--prep-timeout S`` stops the data
preparation (split loading and Torch-RecHub's sample building) after ``S`` seconds
(``SIGALRM``): the JSON line then says so in ``error``, with ``prep_stopped_after_s``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import signal
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

# run as a script, this file's folder (benchmarks/) is first on sys.path, so the package
# benchmarks/external imports as ``external`` (in Torch-RecHub's virtualenv, where rechub's
# ``benchmarks`` package is not installed)
from external.run_torch_rechub import (
    EXAMPLE,
    ITEM_COL,
    USER_COL,
    load_split,
    training_frame,
    training_input,
)

MODELS = ("DSSM", "YoutubeDNN", "SASRec")


def build_inputs(split: Path, model: str) -> dict[str, Any]:
    """Training inputs as the runner builds them (see the module docstring)."""
    from torch_rechub.utils.data import df_to_dict

    meta, train, val, _test, user_profile, user_cols, item_profile, item_cols = load_split(split)
    ex = EXAMPLE[model]
    max_len = int(meta.get("max_len", 50))
    data, vocab = training_frame(meta, train, val, user_profile, user_cols, item_profile, item_cols)
    t = time.perf_counter()
    _, x_train = training_input(data, user_profile, item_profile, ex, max_len, ex["padding"], "pre")
    return {
        "x_train": x_train,
        "all_item": df_to_dict(item_profile),
        "vocab": vocab,
        "user_cols": user_cols,
        "item_cols": item_cols,
        "max_len": max_len,
        "prep_s": time.perf_counter() - t,
    }


def build_model(model: str, inp: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """The runner's model for ``model``: ``(model, y_train, extra MatchTrainer kwargs)``."""
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models import matching as M

    vocab, x = inp["vocab"], inp["x_train"]
    emb = 32 if model == "SASRec" else 16
    hist = "hist_" + ITEM_COL

    def seq_feat(name: str, pooling: str) -> Any:
        return SequenceFeature(
            name, vocab_size=vocab[ITEM_COL], embed_dim=emb, pooling=pooling, shared_with=ITEM_COL
        )

    user_features = [SparseFeature(c, vocab_size=vocab[c], embed_dim=emb) for c in inp["user_cols"]]
    item_features = [SparseFeature(c, vocab_size=vocab[c], embed_dim=emb) for c in inp["item_cols"]]
    n = len(x[USER_COL])
    if model == "DSSM":
        net = M.DSSM(
            [*user_features, seq_feat(hist, "mean")],
            item_features,
            temperature=0.02,
            user_params={"dims": [256, 128, 64], "activation": "prelu"},
            item_params={"dims": [256, 128, 64], "activation": "prelu"},
        )
        return net, x["label"], {}
    if model == "YoutubeDNN":
        net = M.YoutubeDNN(
            [*user_features, seq_feat(hist, "mean")],
            [item_features[0]],
            [seq_feat("neg_items", "concat")],
            user_params={"dims": [128, 64, 16]},
            temperature=0.02,
        )
        return net, np.zeros(n, dtype=np.int64), {}
    if model == "SASRec":
        if hist in x:  # the model reads the history under the hard-coded name "seq"
            x["seq"] = x.pop(hist)
        seq = SequenceFeature("seq", vocab_size=vocab[ITEM_COL], embed_dim=emb, pooling="concat")
        net = M.SASRec(
            [seq],
            max_len=inp["max_len"],
            item_feature=SparseFeature(ITEM_COL, vocab_size=vocab[ITEM_COL], embed_dim=emb),
        )
        return net, np.zeros(n, dtype=np.int64), {"in_batch_neg": True}
    raise SystemExit(f"unknown model {model!r}; choose from {MODELS}")


class Counting:
    """Wraps batches ``(x, y)`` and counts rows and positives on the way."""

    def __init__(self, batches: Iterable[Any], pointwise: bool) -> None:
        self.batches = batches
        self.pointwise = pointwise
        self.rows = self.positives = self.steps = 0

    def __iter__(self) -> Iterator[Any]:
        for x, y in self.batches:
            n = int(y.shape[0])
            self.rows += n
            self.positives += int(y.sum()) if self.pointwise else n
            self.steps += 1
            yield x, y


def measure(
    model: str, inp: dict[str, Any], threads: int, warmup: int, steps: int, seed: int
) -> dict[str, Any]:
    """Warm up, then time ``steps`` batches (0: one epoch) with ``threads`` torch threads."""
    import torch
    from torch_rechub.trainers import MatchTrainer
    from torch_rechub.utils.data import MatchDataGenerator

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    ex = EXAMPLE[model]
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "error": None}
    try:
        net, y, kw = build_model(model, inp)
        out["parameters"] = int(sum(p.numel() for p in net.parameters()))
        dg = MatchDataGenerator(x=inp["x_train"], y=y)
        train_dl, _, _ = dg.generate_dataloader(
            inp["all_item"], inp["all_item"], batch_size=ex["batch"], num_workers=0
        )
        with tempfile.TemporaryDirectory() as work:
            trainer = MatchTrainer(
                net,
                mode=ex["mode"],
                optimizer_params={"lr": ex["lr"], "weight_decay": ex["wd"]},
                n_epoch=1,
                device="cpu",
                model_path=work,
                **kw,
            )
            trainer.train_one_epoch(itertools.islice(train_dl, warmup))
            batches = itertools.islice(train_dl, steps) if steps else train_dl
            counter = Counting(batches, pointwise=ex["mode"] == 0)
            t = time.perf_counter()
            trainer.train_one_epoch(counter)
            seconds = time.perf_counter() - t
        out.update(
            {
                "seconds": seconds,
                "steps": counter.steps,
                "rows": counter.rows,
                "positives": counter.positives,
                "rows_per_s": counter.rows / seconds,
                "positives_per_s": counter.positives / seconds,
            }
        )
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback_tail"] = traceback.format_exc().strip().splitlines()[-8:]
    return out


class PrepTimeout(Exception):
    """Raised by ``SIGALRM`` when the data preparation runs past ``--prep-timeout``."""


def _on_alarm(limit_s: int, signum: int, frame: Any) -> None:
    raise PrepTimeout(f"Torch-RecHub's data preparation ran past --prep-timeout {limit_s} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("split", type=Path)
    ap.add_argument("--model", required=True, choices=MODELS)
    ap.add_argument("--threads", default="2", help="comma-separated torch thread counts")
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="timed batches; 0: one full epoch")
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--prep-timeout", type=int, default=0, help="seconds; 0: no limit")
    a = ap.parse_args()

    ex = EXAMPLE[a.model]
    out: dict[str, Any] = {
        "library": "torch-rechub",
        "model": a.model,
        "batch_size": ex["batch"],
        "batch_unit": "rows",
        "mode": ex["mode"],
        "neg_ratio": ex["neg_ratio"],
        "scored_pairs_per_row": 1 if ex["mode"] == 0 else 1 + ex["neg_ratio"],
        "error": None,
    }
    if a.prep_timeout > 0:
        signal.signal(signal.SIGALRM, functools.partial(_on_alarm, a.prep_timeout))
        signal.alarm(a.prep_timeout)
    start = time.perf_counter()
    try:
        inp = build_inputs(a.split, a.model)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["prep_stopped_after_s"] = time.perf_counter() - start
        print(json.dumps(out))
        return
    finally:
        signal.alarm(0)
    out["prep_total_s"] = time.perf_counter() - start
    out["prep_s"] = inp["prep_s"]
    out["train_rows_per_epoch"] = len(inp["x_train"][USER_COL])
    out["by_threads"] = {
        t: measure(a.model, inp, int(t), a.warmup_steps, a.steps, a.seed)
        for t in a.threads.split(",")
    }
    errors = {r["error"] for r in out["by_threads"].values() if r["error"]}
    out["error"] = "; ".join(sorted(errors)) or None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
