#!/usr/bin/env python3
"""Time Torch-RecHub 0.9.0's data preparation for matching (run in ITS virtualenv).

    benchmarks/.venvs/torch-rechub/bin/python benchmarks/trh_prep_worker.py DATA_DIR \
        [--repeats 1] [--progress FILE]

``DATA_DIR`` holds ``events.csv`` (``user_id,item_id,timestamp``), ``users.csv`` (``user_id`` +
profile columns) and ``items.csv`` (``item_id`` + side columns), written by
``benchmarks/prep.py``. The frame is built as the DSSM example (``examples/matching/
run_ml_dssm.py``) expects it, one row per interaction with the profile columns merged in
(not timed: the example reads it that way from disk). Then, timed stage by stage, exactly the
example's calls:

1. ``encode``: ``LabelEncoder().fit_transform(col) + 1`` for every sparse column (user id, item
   id, profile and side columns), then ``user_profile`` / ``item_profile`` by
   ``drop_duplicates``;
2. ``generate_seq_feature_match(data, user, item, time_col="timestamp", item_attribute_cols=[],
   sample_method=1, mode=0, neg_ratio=3, min_item=0)``: histories and 3 negatives per positive
   (one labelled row each; popularity ``count**0.75`` sampling, as in the example);
3. ``gen_model_input(df_train, ..., seq_max_len=50)``: profile merge and padded histories of the
   training rows (the model-ready dict);
4. ``gen_model_input(df_test, ...)``: the same for the held-out last item of each user.

Prints one JSON line: stage seconds per repeat, row counts, and the RSS after imports and at the
end (the caller also measures the process's peak RSS). Each finished stage is appended to
``--progress`` as a JSON line, so a run stopped at a time limit still shows how far it got.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_frame(folder: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The merged interaction frame and the user / item column lists (ids first)."""
    events = pd.read_csv(folder / "events.csv")
    users = pd.read_csv(folder / "users.csv")
    items = pd.read_csv(folder / "items.csv")
    data = events.merge(users, on="user_id", how="left").merge(items, on="item_id", how="left")
    return data, list(users.columns), list(items.columns)


def run_once(
    data: pd.DataFrame, user_cols: list[str], item_cols: list[str], progress: Path | None
) -> dict[str, Any]:
    """One timed pass of the example's pipeline over a fresh copy of ``data``."""
    from sklearn.preprocessing import LabelEncoder
    from torch_rechub.utils.match import gen_model_input, generate_seq_feature_match

    stages: dict[str, float] = {}

    def done(name: str, start: float) -> None:
        stages[name] = time.perf_counter() - start
        if progress is not None:
            with progress.open("a") as fh:
                fh.write(json.dumps({"stage": name, "seconds": stages[name]}) + "\n")

    t = time.perf_counter()
    for col in [*user_cols, *[c for c in item_cols if c not in user_cols]]:
        data[col] = LabelEncoder().fit_transform(data[col]) + 1
    user_profile = data[user_cols].drop_duplicates("user_id")
    item_profile = data[item_cols].drop_duplicates("item_id")
    done("encode", t)

    t = time.perf_counter()
    df_train, df_test = generate_seq_feature_match(
        data,
        "user_id",
        "item_id",
        time_col="timestamp",
        item_attribute_cols=[],
        sample_method=1,
        mode=0,
        neg_ratio=3,
        min_item=0,
    )
    done("generate_seq_feature_match", t)

    t = time.perf_counter()
    x_train = gen_model_input(
        df_train, user_profile, "user_id", item_profile, "item_id", seq_max_len=50
    )
    done("gen_model_input_train", t)

    t = time.perf_counter()
    x_test = gen_model_input(df_test, user_profile, "user_id", item_profile, "item_id", 50)
    done("gen_model_input_test", t)

    return {
        "stages": stages,
        "seconds": float(sum(stages.values())),
        "train_rows": len(x_train["label"]),
        "train_positives": int(np.asarray(x_train["label"]).sum()),
        "test_rows": len(x_test["label"]),
        "history_shape": list(np.asarray(x_train["hist_item_id"]).shape),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data", type=Path)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2022)
    ap.add_argument("--progress", type=Path, default=None)
    a = ap.parse_args()

    import torch_rechub.utils.match  # noqa: F401  (import cost outside the timed region)
    from sklearn.preprocessing import LabelEncoder  # noqa: F401

    data, user_cols, item_cols = load_frame(a.data)
    rss_after_load = _peak_rss_mb()
    runs = []
    for _ in range(a.repeats):
        np.random.seed(a.seed)
        random.seed(a.seed)
        runs.append(run_once(data.copy(), user_cols, item_cols, a.progress))
    print(
        json.dumps(
            {
                "library": "torch-rechub",
                "rows_in": len(data),
                "runs": runs,
                "peak_rss_after_load_mb": rss_after_load,
                "peak_rss_mb": _peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
