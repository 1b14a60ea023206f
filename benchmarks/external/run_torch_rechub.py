#!/usr/bin/env python3
"""Train a Torch-RecHub 0.9.0 matching model on OUR split and write its user/item vectors.

    benchmarks/.venvs/torch-rechub/bin/python benchmarks/external/run_torch_rechub.py SPLIT OUT \
        --model DSSM --epochs 10 --seed 2022

Runs inside the `torch-rechub` virtualenv made by setup_envs.sh.
NAME in {DSSM, FaceBookDSSM, YoutubeDNN, YoutubeSBC, GRU4Rec, NARM, SASRec, STAMP, MIND, SINE,
ComirecDR, ComirecSA}.

Everything goes through Torch-RecHub's own API, configured as in its examples
(examples/matching/run_ml_*.py, run_sbr.py of the torch-rechub repository):

  data      generate_seq_feature_match(train+val interactions, time_col = position, min_item=0,
            sample_method=1, mode/neg_ratio as in the model's example) -> training samples
            (every train item from position 1 on is a target, history = the items before it; the
            val item becomes the library's own "test" sample and is NOT trained on), then
            gen_model_input(..., seq_max_len=50) merges the profiles (users.csv: gender, age,
            occupation; items.csv: category as cate_id) and pads the histories.
            Test users: one row per user, history = train + val (the test-time history), built in
            the same frame layout and passed through the same gen_model_input.
  model     the example's constructor arguments (dims, temperature, embed_dim=16, ...).
  trainer   MatchTrainer(mode as in the example, Adam, lr / weight_decay / batch size as in the
            example), fit(train_dl) for exactly --epochs epochs (the examples train without a
            validation loader; MatchTrainer's early stopping watches AUC, which matching examples
            do not use).
  vectors   trainer.inference_embedding(mode="user"/"item") -> user_test.npy (U, D) or (U, K, D)
            for the multi-interest models, item.npy (N+1, D), row 0 zeros.

Deliberate deviations from the examples (same for every model, listed in info.json notes):
  * history truncation keeps the MOST RECENT 50 items (gen_model_input's default
    truncating='pre'); the GRU4Rec/MIND/ComiRec examples pass truncating='post', which keeps a
    user's FIRST 50 items -- use --example-truncation to reproduce that exactly. The padding side
    is always the example's (post for GRU4Rec/MIND/ComiRec, whose towers read left-aligned
    sequences; pre for the pooled DSSM family and SINE).
  * DataLoader num_workers=0 for every model (examples use 8/6/0; this machine has 2 cores).
  * NARM/STAMP have only the session-based example (run_sbr.py: full-softmax CE over all items,
    item_emb_dim 100, hidden 50, lr 1e-3, batch 512, weight_decay 0); we keep its model/trainer
    settings but feed it the MovieLens matching data above (y = target item id). Item vectors:
    the model's item embedding table (exactly what its forward scores against), obtained through
    inference_embedding(mode="item") by setting model.item_feature after training.
  * SASRec has no example; its non-in-batch forward returns per-position (pos, neg) logits that
    MatchTrainer's BPR loss cannot consume, so it is trained the way MatchTrainer supports it:
    item_feature set, in_batch_neg=True (softmax over in-batch negatives), history feature named
    "seq" (hard-coded in SASRec.seq_forward), post padding (user_tower reads position len-1),
    embed_dim 32 (docs table), its constructor defaults otherwise (2 blocks, 1 head, dropout 0.5).
  * YoutubeSBC is trained on cosine similarity; its vectors are L2-normalised before writing so
    that a dot product ranks as the model does. (All other towers already normalise, or score
    with a raw dot product.)
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd


class Terminated(Exception):
    """Raised on SIGTERM (e.g. an outer `timeout`) so that info.json still records the stop."""


def _on_sigterm(signum, frame):
    raise Terminated(f"terminated by signal {signum} (time limit?)")


signal.signal(signal.SIGTERM, _on_sigterm)

MODELS = [
    "DSSM",
    "FaceBookDSSM",
    "YoutubeDNN",
    "YoutubeSBC",
    "GRU4Rec",
    "NARM",
    "SASRec",
    "STAMP",
    "MIND",
    "SINE",
    "ComirecDR",
    "ComirecSA",
]

# Example settings (examples/matching/run_ml_*.py defaults; run_sbr.py for NARM/STAMP).
#: the settings the repository's GRU4Rec, MIND and ComiRec examples share
_LIST_WISE_POST = dict(
    mode=2,
    neg_ratio=3,
    lr=1e-3,
    wd=1e-6,
    batch=256,
    padding="post",
    trunc="post",
    example_epochs=10,
)

EXAMPLE = {
    "DSSM": dict(
        mode=0,
        neg_ratio=3,
        lr=1e-4,
        wd=1e-6,
        batch=4096,
        padding="pre",
        trunc="pre",
        example_epochs=10,
    ),
    "FaceBookDSSM": dict(
        mode=1,
        neg_ratio=3,
        lr=1e-4,
        wd=1e-6,
        batch=2048,
        padding="pre",
        trunc="pre",
        example_epochs=10,
    ),
    "YoutubeDNN": dict(
        mode=2,
        neg_ratio=3,
        lr=1e-4,
        wd=1e-6,
        batch=2048,
        padding="pre",
        trunc="pre",
        example_epochs=10,
    ),
    "YoutubeSBC": dict(
        mode=2,
        gen_mode=0,
        neg_ratio=0,
        lr=1e-3,
        wd=1e-6,
        batch=512,
        padding="pre",
        trunc="pre",
        example_epochs=8,
    ),
    "GRU4Rec": dict(_LIST_WISE_POST),
    "MIND": dict(_LIST_WISE_POST),
    "ComirecDR": dict(_LIST_WISE_POST),
    "ComirecSA": dict(_LIST_WISE_POST),
    "SINE": dict(
        mode=2,
        neg_ratio=3,
        lr=1e-3,
        wd=1e-6,
        batch=256,
        padding="pre",
        trunc="pre",
        example_epochs=10,
    ),
    "NARM": dict(
        mode=2,
        gen_mode=0,
        neg_ratio=0,
        lr=1e-3,
        wd=0.0,
        batch=512,
        padding="post",
        trunc="pre",
        example_epochs=30,
    ),
    "STAMP": dict(
        mode=2,
        gen_mode=0,
        neg_ratio=0,
        lr=1e-3,
        wd=0.0,
        batch=512,
        padding="post",
        trunc="pre",
        example_epochs=30,
    ),
    "SASRec": dict(
        mode=2,
        gen_mode=0,
        neg_ratio=0,
        lr=1e-3,
        wd=1e-6,
        batch=256,
        padding="post",
        trunc="pre",
        example_epochs=None,
    ),
}

USER_COL, ITEM_COL = "user_id", "movie_id"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_split(split: Path):
    meta = json.loads((split / "meta.json").read_text())
    train = pd.read_csv(split / "train.csv").sort_values(["user", "position"], kind="mergesort")
    val = pd.read_csv(split / "val.csv")
    test = pd.read_csv(split / "test.csv")
    U, N = meta["n_users"], meta["n_items"]
    users = pd.read_csv(split / "users.csv") if (split / "users.csv").exists() else None
    items = pd.read_csv(split / "items.csv") if (split / "items.csv").exists() else None
    user_profile = pd.DataFrame({USER_COL: np.arange(1, U + 1)})
    user_cols = [USER_COL]
    if users is not None:
        prof = users.rename(columns={"user": USER_COL})
        user_profile = user_profile.merge(prof, on=USER_COL, how="left").fillna(0)
        for c in ["gender", "age", "occupation"]:
            if c in user_profile:
                user_profile[c] = user_profile[c].astype(np.int64)
                user_cols.append(c)
    item_profile = pd.DataFrame({ITEM_COL: np.arange(1, N + 1)})
    item_cols = [ITEM_COL]
    if items is not None:
        it = items.rename(columns={"item": ITEM_COL, "category": "cate_id"})
        item_profile = item_profile.merge(
            it[[ITEM_COL, "cate_id"]], on=ITEM_COL, how="left"
        ).fillna(0)
        item_profile["cate_id"] = item_profile["cate_id"].astype(np.int64)
        item_cols.append("cate_id")
    return meta, train, val, test, user_profile, user_cols, item_profile, item_cols


def training_frame(meta, train, val, user_profile, user_cols, item_profile, item_cols):
    """The interactions Torch-RecHub trains on (train + val, ``timestamp`` = position, the val
    item last) merged with the profiles, and the vocabulary size of every column."""
    tr = train[["user", "item", "position"]].rename(
        columns={"user": USER_COL, "item": ITEM_COL, "position": "timestamp"}
    )
    last = train.groupby("user")["position"].max()
    v = val.rename(columns={"user": USER_COL, "item": ITEM_COL}).copy()
    v["timestamp"] = v[USER_COL].map(last).fillna(-1).astype(np.int64) + 1
    data = pd.concat([tr, v[[USER_COL, ITEM_COL, "timestamp"]]], ignore_index=True)
    data = data.merge(user_profile, on=USER_COL, how="left").merge(
        item_profile, on=ITEM_COL, how="left"
    )
    vocab = {USER_COL: meta["n_users"] + 1, ITEM_COL: meta["n_items"] + 1}
    for c in user_cols[1:]:
        vocab[c] = int(user_profile[c].max()) + 1
    for c in item_cols[1:]:
        vocab[c] = int(item_profile[c].max()) + 1
    return data, vocab


def training_input(data, user_profile, item_profile, ex, max_len, padding, trunc):
    """Torch-RecHub's own sample building for one example's settings:
    ``generate_seq_feature_match`` then ``gen_model_input``; returns (frame, model input)."""
    from torch_rechub.utils.match import gen_model_input, generate_seq_feature_match

    df_train, _df_val = generate_seq_feature_match(
        data,
        USER_COL,
        ITEM_COL,
        time_col="timestamp",
        item_attribute_cols=[],
        sample_method=1,
        mode=ex.get("gen_mode", ex["mode"]),
        neg_ratio=ex["neg_ratio"],
        min_item=0,
    )
    x_train = gen_model_input(
        df_train,
        user_profile,
        USER_COL,
        item_profile,
        ITEM_COL,
        seq_max_len=max_len,
        padding=padding,
        truncating=trunc,
    )
    return df_train, x_train


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("split", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", required=True, choices=MODELS)
    ap.add_argument("--epochs", type=int, default=None, help="default: the example's epoch count")
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument(
        "--batch-size", type=int, default=None, help="override the example's batch size"
    )
    ap.add_argument(
        "--embed-dim", type=int, default=None, help="override the example's embedding size"
    )
    ap.add_argument(
        "--example-truncation",
        action="store_true",
        help="truncate histories exactly as the example does (GRU4Rec/MIND/ComiRec keep the FIRST 50 items)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--keep-work", action="store_true", help="keep OUT/_trh (model.pth)")
    a = ap.parse_args()

    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "_trh"
    ex = EXAMPLE[a.model]
    epochs = a.epochs if a.epochs is not None else (ex["example_epochs"] or 10)
    info = {
        "library": "torch-rechub",
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
    try:
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        import torch_rechub
        from torch_rechub.basic.features import DenseFeature, SequenceFeature, SparseFeature
        from torch_rechub.models import matching as M
        from torch_rechub.trainers import MatchTrainer
        from torch_rechub.utils.data import MatchDataGenerator, array_replace_with_dict, df_to_dict
        from torch_rechub.utils.match import gen_model_input

        try:
            from importlib.metadata import version as _v

            info["version"] = _v("torch-rechub")
        except Exception:
            info["version"] = getattr(torch_rechub, "__version__", None)

        torch.manual_seed(a.seed)
        np.random.seed(a.seed)
        random.seed(a.seed)

        meta, train, val, test, user_profile, user_cols, item_profile, item_cols = load_split(
            a.split
        )
        U, N, max_len = meta["n_users"], meta["n_items"], int(meta.get("max_len", 50))
        padding = ex["padding"]
        trunc = ex["trunc"] if a.example_truncation else "pre"
        batch = a.batch_size or ex["batch"]
        mode = ex["mode"]
        emb = a.embed_dim or {"NARM": 100, "STAMP": 100, "SINE": 128, "SASRec": 32}.get(a.model, 16)

        data, feature_max_idx = training_frame(
            meta, train, val, user_profile, user_cols, item_profile, item_cols
        )

        if a.model == "YoutubeSBC":
            # examples/matching/movielens_utils.get_item_sample_weight: count**0.75 normalised
            cnt = data[ITEM_COL].value_counts()
            p = cnt**0.75
            w = (p / p.sum()).to_dict()
            floor = float(min(w.values()))
            item_profile = item_profile.copy()
            item_profile["sample_weight"] = (
                item_profile[ITEM_COL].map(w).fillna(floor).astype(np.float32)
            )
            notes.append(
                "sample_weight = count^0.75/sum over train+val; unseen items get the minimum weight"
            )

        t_prep = time.perf_counter()
        df_train, x_train = training_input(
            data, user_profile, item_profile, ex, max_len, padding, trunc
        )
        prep_seconds = time.perf_counter() - t_prep

        # test users: history = train + val, one row per user in order 1..U
        hist = (
            data[[USER_COL, ITEM_COL, "timestamp"]]  # train + val (merges keep the row order)
            .sort_values([USER_COL, "timestamp"], kind="mergesort")
            .groupby(USER_COL)[ITEM_COL]
            .agg(list)
        )
        tmap = dict(zip(test["user"], test["item"], strict=False))
        uids = np.arange(1, U + 1)
        hl = [hist.get(u, []) for u in uids]
        df_test = pd.DataFrame(
            {
                USER_COL: uids,
                ITEM_COL: [tmap.get(u, 1) for u in uids],
                "hist_" + ITEM_COL: hl,
                "histlen_" + ITEM_COL: [len(h) for h in hl],
                "label": 1,
            }
        )
        x_test = gen_model_input(
            df_test,
            user_profile,
            USER_COL,
            item_profile,
            ITEM_COL,
            seq_max_len=max_len,
            padding=padding,
            truncating=trunc,
        )
        assert (np.asarray(x_test[USER_COL]) == uids).all(), "test-user order changed"
        all_item = df_to_dict(item_profile)

        hist_name = "hist_" + ITEM_COL
        n_train = len(df_train)

        def seq_feat(name, pooling, shared=True):
            return SequenceFeature(
                name,
                vocab_size=feature_max_idx[ITEM_COL],
                embed_dim=emb,
                pooling=pooling,
                shared_with=ITEM_COL if shared else None,
            )

        user_features = [
            SparseFeature(c, vocab_size=feature_max_idx[c], embed_dim=emb) for c in user_cols
        ]
        item_features = [
            SparseFeature(c, vocab_size=feature_max_idx[c], embed_dim=emb) for c in item_cols
        ]
        trainer_kw = {}
        set_item_feature_after = None
        y_train = np.zeros(n_train, dtype=np.int64)

        if a.model == "DSSM":
            y_train = x_train["label"]
            model = M.DSSM(
                [*user_features, seq_feat(hist_name, "mean")],
                item_features,
                temperature=0.02,
                user_params={"dims": [256, 128, 64], "activation": "prelu"},
                item_params={"dims": [256, 128, 64], "activation": "prelu"},
            )
        elif a.model == "FaceBookDSSM":
            neg_item_features = [
                SparseFeature("neg_items", vocab_size=feature_max_idx[ITEM_COL], embed_dim=emb)
            ]
            if "cate_id" in item_cols:
                cate_map = dict(zip(item_profile[ITEM_COL], item_profile["cate_id"], strict=False))
                x_train["neg_cate"] = array_replace_with_dict(x_train["neg_items"], cate_map)
                neg_item_features.append(
                    SparseFeature("neg_cate", vocab_size=feature_max_idx["cate_id"], embed_dim=emb)
                )
            model = M.FaceBookDSSM(
                [*user_features, seq_feat(hist_name, "mean")],
                item_features,
                neg_item_features,
                temperature=0.02,
                user_params={"dims": [256, 128, 64, 32]},
                item_params={"dims": [256, 128, 64, 32]},
            )
        elif a.model == "YoutubeDNN":
            model = M.YoutubeDNN(
                [*user_features, seq_feat(hist_name, "mean")],
                [item_features[0]],
                [seq_feat("neg_items", "concat")],
                user_params={"dims": [128, 64, 16]},
                temperature=0.02,
            )
        elif a.model == "YoutubeSBC":
            model = M.YoutubeSBC(
                [*user_features, seq_feat(hist_name, "mean")],
                item_features,
                [DenseFeature("sample_weight")],
                user_params={"dims": [128, 64, 16]},
                item_params={"dims": [128, 64, 16]},
                batch_size=batch,
                n_neg=3,
                temperature=0.02,
            )
        elif a.model == "GRU4Rec":
            model = M.GRU4Rec(
                user_features,
                [seq_feat(hist_name, "concat")],
                [item_features[0]],
                [seq_feat("neg_items", "concat")],
                user_params={"dims": [128, 64, 16]},
                temperature=0.02,
            )
        elif a.model == "MIND":
            model = M.MIND(
                user_features,
                [seq_feat(hist_name, "concat")],
                [item_features[0]],
                [seq_feat("neg_items", "concat")],
                max_length=max_len,
                temperature=0.02,
            )
        elif a.model == "ComirecDR":
            model = M.ComirecDR(
                user_features,
                [seq_feat(hist_name, "concat")],
                [item_features[0]],
                [seq_feat("neg_items", "concat")],
                max_length=max_len,
                temperature=0.02,
            )
        elif a.model == "ComirecSA":
            model = M.ComirecSA(
                user_features,
                [seq_feat(hist_name, "concat")],
                [item_features[0]],
                [seq_feat("neg_items", "concat")],
                temperature=0.02,
            )
        elif a.model == "SINE":
            # run_ml_sine.py: ids only, embedding_dim 128, hidden_dim 512, 10 concepts, 2 intentions, temperature 0.1
            model = M.SINE(
                [hist_name],
                [ITEM_COL],
                ["neg_items"],
                feature_max_idx[ITEM_COL],
                emb,
                512,
                10,
                2,
                max_len,
                temperature=0.1,
            )
        elif a.model in ("NARM", "STAMP"):
            y_train = np.asarray(x_train[ITEM_COL], dtype=np.int64)  # full softmax over items
            hf = SequenceFeature(
                hist_name, vocab_size=feature_max_idx[ITEM_COL], embed_dim=emb, pooling="concat"
            )
            model = M.NARM(hf, 50, 0.25, 0.5) if a.model == "NARM" else M.STAMP(hf, 0.05, 0.002)
            set_item_feature_after = SparseFeature(
                ITEM_COL, vocab_size=feature_max_idx[ITEM_COL], embed_dim=emb
            )
        elif a.model == "SASRec":
            for x in (x_train, x_test):
                x["seq"] = x.pop(hist_name)
            seq = SequenceFeature(
                "seq", vocab_size=feature_max_idx[ITEM_COL], embed_dim=emb, pooling="concat"
            )
            model = M.SASRec(
                [seq],
                max_len=max_len,
                item_feature=SparseFeature(
                    ITEM_COL, vocab_size=feature_max_idx[ITEM_COL], embed_dim=emb
                ),
            )
            trainer_kw = {"in_batch_neg": True}
            notes.append(
                "SASRec has no example; trained via MatchTrainer(in_batch_neg=True) with item_feature "
                "(the path 0.9.0 documents for SASRec). Its original pos/neg forward cannot be trained by "
                "MatchTrainer either: mode=1 BPRLoss does pos.view(-1,1) - neg on (B,L) logits -> "
                "'RuntimeError: The size of tensor a (B*L) must match the size of tensor b (B)'"
            )
        else:  # pragma: no cover
            raise ValueError(a.model)

        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        dg = MatchDataGenerator(x=x_train, y=y_train)
        train_dl, test_dl, item_dl = dg.generate_dataloader(
            x_test, all_item, batch_size=batch, num_workers=0
        )
        trainer = MatchTrainer(
            model,
            mode=mode,
            optimizer_params={"lr": ex["lr"], "weight_decay": ex["wd"]},
            n_epoch=epochs,
            device="cpu",
            model_path=str(work),
            **trainer_kw,
        )

        epoch_times = []
        orig = trainer.train_one_epoch

        def timed(*args, **kw):
            t0 = time.perf_counter()
            r = orig(*args, **kw)
            epoch_times.append(time.perf_counter() - t0)
            return r

        trainer.train_one_epoch = timed
        trainer.fit(train_dl)
        info["epochs"] = len(epoch_times)
        info["train_seconds"] = float(sum(epoch_times))
        info["seconds_per_epoch"] = float(np.mean(epoch_times))
        info["samples_per_second"] = float(n_train / np.mean(epoch_times))
        info["n_train_samples"] = int(n_train)
        info["prep_seconds"] = prep_seconds

        t0 = time.perf_counter()
        user_emb = trainer.inference_embedding(
            model=model, mode="user", data_loader=test_dl, model_path=str(work)
        )
        if set_item_feature_after is not None:
            model.item_feature = set_item_feature_after
        item_emb = trainer.inference_embedding(
            model=model, mode="item", data_loader=item_dl, model_path=str(work)
        )
        info["inference_seconds"] = time.perf_counter() - t0
        user_emb = user_emb.detach().cpu().float().numpy()
        item_emb = item_emb.detach().cpu().float().numpy()
        if item_emb.ndim == 3 and item_emb.shape[1] == 1:
            item_emb = item_emb[:, 0]
        if a.model == "YoutubeSBC":
            user_emb = user_emb / np.maximum(
                np.linalg.norm(user_emb, axis=-1, keepdims=True), 1e-12
            )
            item_emb = item_emb / np.maximum(
                np.linalg.norm(item_emb, axis=-1, keepdims=True), 1e-12
            )
        if user_emb.shape[0] != U or item_emb.shape[0] != N:
            raise RuntimeError(
                f"unexpected embedding shapes user {user_emb.shape} item {item_emb.shape}"
            )
        items_out = np.zeros((N + 1, item_emb.shape[-1]), dtype=np.float32)
        items_out[np.asarray(all_item[ITEM_COL])] = item_emb
        np.save(out / "user_test.npy", user_emb.astype(np.float32))
        np.save(out / "item.npy", items_out)
        info["user_shape"] = list(user_emb.shape)
        notes.append(
            f"mode {mode}{' in_batch_neg' if trainer_kw else ''}, lr {ex['lr']}, weight_decay {ex['wd']}, "
            f"batch {batch}, embed_dim {emb}, neg_ratio {ex['neg_ratio']}, padding {padding}, "
            f"truncating {trunc}, num_workers 0, torch threads {torch.get_num_threads()}, "
            f"example epochs {ex['example_epochs']}"
        )
        if a.model in ("NARM", "STAMP"):
            notes.append(
                "run_sbr.py settings on matching data; item vectors = item embedding table"
            )
    except BaseException as e:
        tb = traceback.format_exc().strip().splitlines()
        info["error"] = "\n".join(tb[-12:])
        print(traceback.format_exc(), file=sys.stderr)
        if isinstance(e, KeyboardInterrupt):
            raise
    finally:
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
