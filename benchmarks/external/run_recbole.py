#!/usr/bin/env python3
"""Train a RecBole 1.2.1 sequential model on OUR split and write its full-sort test scores.

    benchmarks/.venvs/recbole/bin/python benchmarks/external/run_recbole.py SPLIT OUT \
        --model SASRec --epochs 50 --seed 2020

Runs inside the `recbole` virtualenv made by setup_envs.sh. NAME in {GRU4Rec, NARM, SASRec,
STAMP, SINE}.

What it does
  1. Writes RecBole atomic files (OUT/_recbole/data/ext/ext.inter, columns user_id:token,
     item_id:token, timestamp:float) holding ALL interactions (train + val + test). The
     timestamp is the position of the interaction in the user's full ordered sequence
     (train positions, then val, then test), so RecBole's leave-one-out by time
     (eval_args split LS valid_and_test, order TO, mode full) reproduces our val/test targets.
  2. Builds the dataset with RecBole's own create_dataset/data_preparation and VERIFIES that
     RecBole's test targets == test.csv, its validation targets == val.csv, its test-time input
     sequences == the last MAX_ITEM_LIST_LENGTH items of train+val, and its training targets ==
     our train rows with position >= 1. Any mismatch raises (and is written to info.json).
  3. Trains with RecBole's trainer: loss_type CE, train_neg_sample_args None, full ranking,
     early stopping on NDCG@10 (valid_metric ndcg@10, stopping_step 10 = RecBole's default),
     epochs capped at E, seed S, CPU. Everything else is the model's RecBole default
     (properties/model/NAME.yaml and overall.yaml: batch 2048, Adam lr 1e-3, ...).
  4. Loads the best checkpoint (by validation NDCG@10), runs model.full_sort_predict on the
     test loader (input = train+val history) and writes scores_test.npy (U, N+1) float32 in
     OUR ids (mapped through dataset.field2id_token), plus info.json.

Quirks handled here (never by editing the installed package):
  * numpy 2 removed np.float_/np.complex_/np.unicode_ (and np.float/np.int/... long ago);
    RecBole 1.2.1's Config.compatibility_settings() reads them -> shimmed before import.
  * recbole.quick_start imports ray at module level (ray<=2.6.3 is pinned, not installed) ->
    the runner drives Config/create_dataset/data_preparation/get_model/get_trainer directly.
  * torch >= 2.6 defaults torch.load(weights_only=True); RecBole's checkpoints hold a Config
    object -> the best checkpoint is loaded here with weights_only=False (our own file).
  * RecBole writes ./log and ./log_tensorboard relative to the working directory -> the runner
    chdirs into OUT/_recbole.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np

# ---- numpy 2 shim for RecBole 1.2.1 (aliases removed from numpy) -------------------------
_NP_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "string_": np.bytes_,
    "bool": bool,
    "int": int,
    "float": float,
    "complex": complex,
    "object": object,
    "str": str,
    "long": int,
    "unicode": str,
}
for _k, _v in _NP_ALIASES.items():
    if _k not in np.__dict__:
        setattr(np, _k, _v)


class Terminated(Exception):
    """Raised on SIGTERM (e.g. an outer `timeout`) so that info.json still records the stop."""


def _on_sigterm(signum, frame):
    raise Terminated(f"terminated by signal {signum} (time limit?)")


signal.signal(signal.SIGTERM, _on_sigterm)

MODELS = ["GRU4Rec", "NARM", "SASRec", "STAMP", "SINE"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def read_split(split: Path):
    import pandas as pd

    meta = json.loads((split / "meta.json").read_text())
    train = pd.read_csv(split / "train.csv")
    val = pd.read_csv(split / "val.csv")
    test = pd.read_csv(split / "test.csv")
    return meta, train, val, test


def full_sequences(train, val, test):
    """Per-user full ordered sequence: train (by position), then val, then test."""
    import pandas as pd

    tr = train.sort_values(["user", "position"], kind="mergesort")[["user", "item"]].copy()
    tr["part"] = 0
    v = val[["user", "item"]].copy()
    v["part"] = 1
    t = test[["user", "item"]].copy()
    t["part"] = 2
    allx = pd.concat([tr, v, t], ignore_index=True)
    allx["order"] = np.arange(len(allx))
    allx = allx.sort_values(["user", "part", "order"], kind="mergesort").reset_index(drop=True)
    allx["timestamp"] = allx.groupby("user").cumcount().astype(float)
    return allx


def write_atomic(allx, data_root: Path, name: str) -> None:
    d = data_root / name
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{name}.inter", "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        allx[["user", "item", "timestamp"]].to_csv(
            f, sep="\t", header=False, index=False, float_format="%.1f"
        )


def verify_split(dataset, train_data, valid_data, test_data, train, val, test, max_len):
    """Fail loudly unless RecBole's split is exactly ours (targets and test-time inputs)."""
    uid_f, iid_f = dataset.uid_field, dataset.iid_field
    ilist_f = iid_f + dataset.config["LIST_SUFFIX"]
    len_f = dataset.config["ITEM_LIST_LENGTH_FIELD"]
    u_tok = np.array([int(t) if t != "[PAD]" else 0 for t in dataset.field2id_token[uid_f]])
    i_tok = np.array([int(t) if t != "[PAD]" else 0 for t in dataset.field2id_token[iid_f]])

    def pairs(ds):
        f = ds.inter_feat
        return u_tok[f[uid_f].numpy()], i_tok[f[iid_f].numpy()]

    problems = []
    for name, ds, ref in (("test", test_data.dataset, test), ("valid", valid_data.dataset, val)):
        u, i = pairs(ds)
        got = dict(zip(u.tolist(), i.tolist(), strict=False))
        want = dict(zip(ref["user"].tolist(), ref["item"].tolist(), strict=False))
        if len(u) != len(ref) or got != want:
            bad = [k for k in want if got.get(k) != want[k]][:5]
            problems.append(
                f"{name} targets differ from {name}.csv: {len(u)} rows vs {len(ref)}; "
                f"first differing users {bad}"
            )
    # test-time input sequence == last max_len items of train+val
    f = test_data.dataset.inter_feat
    tu = u_tok[f[uid_f].numpy()]
    lists = i_tok[f[ilist_f].numpy()]
    lens = f[len_f].numpy()
    hist = {
        u: g["item"].tolist() for u, g in train.sort_values(["user", "position"]).groupby("user")
    }
    vmap = dict(zip(val["user"].tolist(), val["item"].tolist(), strict=False))
    n_bad = 0
    for row, u in enumerate(tu.tolist()):
        want = ([*hist.get(u, []), vmap[u]])[-max_len:]
        got = lists[row, : lens[row]].tolist()
        if got != want:
            n_bad += 1
    if n_bad:
        problems.append(
            f"{n_bad} test users' RecBole input sequence != last {max_len} of train+val"
        )
    # training targets == our train rows with position >= 1
    u, i = pairs(train_data.dataset)
    got = sorted(zip(u.tolist(), i.tolist(), strict=False))
    tr = train[train["position"] >= 1]
    want = sorted(zip(tr["user"].tolist(), tr["item"].tolist(), strict=False))
    if got != want:
        problems.append(f"training targets differ: {len(got)} RecBole rows vs {len(want)} ours")
    if problems:
        raise RuntimeError("RecBole split does not match ours: " + " | ".join(problems))
    return {"test_rows": len(test), "valid_rows": len(val), "train_rows": len(got)}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("split", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", required=True, choices=MODELS)
    ap.add_argument(
        "--epochs", type=int, default=300, help="cap on epochs (early stopping may stop sooner)"
    )
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--stopping-step", type=int, default=10, help="RecBole default 10")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument(
        "--keep-work",
        action="store_true",
        help="keep OUT/_recbole (atomic files, checkpoint, logs)",
    )
    a = ap.parse_args()

    split = a.split.resolve()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "_recbole"
    info = {
        "library": "recbole",
        "version": None,
        "model": a.model,
        "epochs": 0,
        "train_seconds": None,
        "seconds_per_epoch": None,
        "samples_per_second": None,
        "peak_rss_mb": None,
        "error": None,
        "notes": "",
    }
    notes = []
    t_start = time.time()
    cwd = os.getcwd()
    try:
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        import recbole

        info["version"] = recbole.__version__
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import get_model, get_trainer, init_logger, init_seed

        meta, train, val, test = read_split(split)
        U, N, max_len = meta["n_users"], meta["n_items"], int(meta.get("max_len", 50))
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        allx = full_sequences(train, val, test)
        write_atomic(allx, work / "data", "ext")
        os.chdir(work)  # RecBole writes ./log and ./log_tensorboard

        cfg = {
            "data_path": str(work / "data"),
            "checkpoint_dir": str(work / "saved"),
            "USER_ID_FIELD": "user_id",
            "ITEM_ID_FIELD": "item_id",
            "TIME_FIELD": "timestamp",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "MAX_ITEM_LIST_LENGTH": max_len,
            "loss_type": "CE",
            "train_neg_sample_args": None,
            "eval_args": {
                "split": {"LS": "valid_and_test"},
                "order": "TO",
                "mode": "full",
                "group_by": "user",
            },
            "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"],
            "topk": [10, 20, 50],
            "valid_metric": "NDCG@10",
            "stopping_step": a.stopping_step,
            "epochs": a.epochs,
            "seed": a.seed,
            "reproducibility": True,
            "use_gpu": False,
            "gpu_id": "",
            "show_progress": False,
            "save_dataset": False,
            "save_dataloaders": False,
            "log_wandb": False,
            "state": "INFO",
        }
        argv, sys.argv = sys.argv, sys.argv[:1]  # Config parses the command line for --key=value
        try:
            config = Config(model=a.model, dataset="ext", config_dict=cfg)
        finally:
            sys.argv = argv
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        checks = verify_split(dataset, train_data, valid_data, test_data, train, val, test, max_len)
        notes.append(f"split verified against SPLIT: {checks}")

        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

        epoch_times, valid_times = [], []
        orig_train_epoch, orig_valid_epoch = trainer._train_epoch, trainer._valid_epoch

        def timed_train_epoch(*args, **kw):
            t0 = time.perf_counter()
            r = orig_train_epoch(*args, **kw)
            epoch_times.append(time.perf_counter() - t0)
            return r

        def timed_valid_epoch(*args, **kw):
            t0 = time.perf_counter()
            r = orig_valid_epoch(*args, **kw)
            valid_times.append(time.perf_counter() - t0)
            return r

        trainer._train_epoch = timed_train_epoch
        trainer._valid_epoch = timed_valid_epoch
        try:
            best_valid_score, _best_valid_result = trainer.fit(
                train_data, valid_data, saved=True, show_progress=False
            )
        except Terminated as stop:  # time limit: score the best checkpoint saved so far
            if not valid_times or not os.path.exists(trainer.saved_model_file):
                raise
            best_valid_score = trainer.best_valid_score
            info["stopped"] = f"{stop} after {len(epoch_times)} complete epochs"
            notes.append(
                f"training stopped by a signal after {len(epoch_times)} complete epochs "
                "(time limit); scored the best validation checkpoint saved by then"
            )

        n_train = len(train_data.dataset)
        info["epochs"] = len(epoch_times)
        info["train_seconds"] = float(sum(epoch_times))
        info["seconds_per_epoch"] = float(np.mean(epoch_times)) if epoch_times else None
        info["samples_per_second"] = float(n_train / np.mean(epoch_times)) if epoch_times else None
        info["valid_seconds_per_epoch"] = float(np.mean(valid_times)) if valid_times else None
        info["best_valid_ndcg@10"] = float(best_valid_score)
        info["best_epoch"] = int(len(valid_times) - 1 - trainer.cur_step) if valid_times else None
        info["n_train_samples"] = int(n_train)

        # best checkpoint (our own file; RecBole's checkpoint holds a Config -> weights_only=False)
        ck = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["state_dict"])
        model.load_other_parameter(ck.get("other_parameter"))
        model.eval()
        test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        info["recbole_test_result"] = {k: float(v) for k, v in test_result.items()}
        notes.append(
            "recbole_test_result is RecBole's own metric on the test split; for sequential "
            "models RecBole does NOT mask history items, our scorer does"
        )

        # full-sort scores for test users, mapped back to our ids
        uid_f, iid_f = dataset.uid_field, dataset.iid_field
        u_tok = np.array([int(t) if t != "[PAD]" else 0 for t in dataset.field2id_token[uid_f]])
        i_tok = np.array([int(t) if t != "[PAD]" else 0 for t in dataset.field2id_token[iid_f]])
        scores = np.full((U, N + 1), -np.inf, dtype=np.float32)
        seen = np.zeros(U + 1, dtype=bool)
        t0 = time.perf_counter()
        with torch.no_grad():
            for batched in test_data:
                interaction = batched[0].to(config["device"])
                s = model.full_sort_predict(interaction).view(len(interaction), -1).cpu().numpy()
                ours_u = u_tok[interaction[uid_f].cpu().numpy()]
                rows = np.empty((len(ours_u), N + 1), dtype=np.float32)
                rows[:] = -np.inf
                rows[:, i_tok[1:]] = s[:, 1:]
                scores[ours_u - 1] = rows
                seen[ours_u] = True
        info["predict_seconds"] = time.perf_counter() - t0
        missing = np.where(~seen[1:])[0] + 1
        if len(missing):
            notes.append(
                f"{len(missing)} users had no test row (scores -inf): {missing[:10].tolist()}"
            )
        if (i_tok[1:] == 0).any() or len(set(i_tok[1:].tolist())) != len(i_tok) - 1:
            raise RuntimeError("item token map is not a bijection onto our item ids")
        not_in_recbole = N - (len(i_tok) - 1)
        if not_in_recbole:
            notes.append(
                f"{not_in_recbole} of our items never occur in any interaction; score -inf"
            )
        np.save(out / "scores_test.npy", scores)
        notes.append(
            f"config: batch {config['train_batch_size']}, lr {config['learning_rate']}, "
            f"stopping_step {config['stopping_step']}, MAX_ITEM_LIST_LENGTH {config['MAX_ITEM_LIST_LENGTH']}, "
            f"loss {config['loss_type']}, torch threads {torch.get_num_threads()}"
        )
    except BaseException as e:
        tb = traceback.format_exc().strip().splitlines()
        info["error"] = "\n".join(tb[-12:])
        print(traceback.format_exc(), file=sys.stderr)
        if isinstance(e, KeyboardInterrupt):
            raise
    finally:
        os.chdir(cwd)
        info["wall_seconds"] = time.time() - t_start
        info["peak_rss_mb"] = peak_rss_mb()
        info["notes"] = "; ".join(notes)
        (out / "info.json").write_text(json.dumps(info, indent=1) + "\n")
        if not a.keep_work and work.exists():
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: info[k] for k in ("model", "epochs", "seconds_per_epoch", "error")}))
    return 0 if info["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
