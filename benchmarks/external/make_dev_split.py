#!/usr/bin/env python3
"""Build a development split folder (the external-benchmark interchange format) from MovieLens-100K.

Protocol (DESIGN.md section 4): drop users with < 5 interactions; order each user's events by
(timestamp, raw item id); last = test, second-to-last = val, the rest = train. Ids are encoded by
sorted raw id order: users 1..U, items 1..N (0 is never used).

Only items that appear in the kept users' interactions are encoded (on ML-100K every user has
>= 20 ratings, so nothing is dropped and U = 943, N = 1682).

Usage:  python benchmarks/external/make_dev_split.py [--data-dir DIR] [--out benchmarks/.work/dev_split]

Uses numpy + pandas only (works in the project venv and in either peer venv).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    env = os.environ.get("RECHUB_DATA_DIR")
    if env:
        return Path(env) / "ml-100k"
    return ROOT.parent / "shared" / "data" / "ml-100k"


def build(data_dir: Path, out: Path, max_len: int = 50, min_inter: int = 5) -> dict:
    df = pd.read_csv(
        data_dir / "u.data",
        sep="\t",
        header=None,
        names=["user", "item", "rating", "ts"],
        engine="c",
    )
    counts = df.groupby("user")["item"].transform("size")
    df = df[counts >= min_inter]
    # order by (user, timestamp, raw item id)
    df = df.sort_values(["user", "ts", "item"], kind="mergesort").reset_index(drop=True)

    users = np.sort(df["user"].unique())
    items = np.sort(df["item"].unique())
    umap = pd.Series(np.arange(1, len(users) + 1), index=users)
    imap = pd.Series(np.arange(1, len(items) + 1), index=items)
    df["u"] = umap.loc[df["user"].to_numpy()].to_numpy()
    df["i"] = imap.loc[df["item"].to_numpy()].to_numpy()

    pos = df.groupby("u").cumcount().to_numpy()
    n = df.groupby("u")["i"].transform("size").to_numpy()
    df["position"] = pos
    test = df[pos == n - 1]
    val = df[pos == n - 2]
    train = df[pos < n - 2]

    out.mkdir(parents=True, exist_ok=True)
    train[["u", "i", "position"]].rename(columns={"u": "user", "i": "item"}).to_csv(
        out / "train.csv", index=False
    )
    val[["u", "i"]].rename(columns={"u": "user", "i": "item"}).to_csv(out / "val.csv", index=False)
    test[["u", "i"]].rename(columns={"u": "user", "i": "item"}).to_csv(
        out / "test.csv", index=False
    )

    # profile features (int codes >= 1, assigned by sorted value)
    uu = data_dir / "u.user"
    if uu.exists():
        prof = pd.read_csv(
            uu, sep="|", header=None, names=["user", "age", "gender", "occupation", "zip"]
        )
        prof = prof[prof["user"].isin(users)].copy()
        prof["user"] = umap.loc[prof["user"].to_numpy()].to_numpy()
        for c in ["gender", "age", "occupation"]:
            cats = np.sort(prof[c].unique())
            prof[c] = (
                pd.Series(np.arange(1, len(cats) + 1), index=cats)
                .loc[prof[c].to_numpy()]
                .to_numpy()
            )
        prof.sort_values("user")[["user", "gender", "age", "occupation"]].to_csv(
            out / "users.csv", index=False
        )
    ui = data_dir / "u.item"
    if ui.exists():
        it = pd.read_csv(ui, sep="|", header=None, encoding="latin-1")
        genres = it.iloc[:, 5:24].to_numpy()
        # category = first genre flag set (19 genres, index 0 = "unknown"), code = index + 1
        cat = genres.argmax(axis=1) + 1
        it = pd.DataFrame({"raw": it.iloc[:, 0].to_numpy(), "category": cat})
        it = it[it["raw"].isin(items)].copy()
        it["item"] = imap.loc[it["raw"].to_numpy()].to_numpy()
        it.sort_values("item")[["item", "category"]].to_csv(out / "items.csv", index=False)

    meta = {"n_users": len(users), "n_items": len(items), "max_len": int(max_len)}
    (out / "meta.json").write_text(json.dumps(meta) + "\n")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding u.data (default: ../shared/data/ml-100k)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / ".work" / "dev_split")
    ap.add_argument("--max-len", type=int, default=50)
    a = ap.parse_args()
    meta = build(a.data_dir or default_data_dir(), a.out, a.max_len)
    print(f"wrote {a.out}: {meta}")


if __name__ == "__main__":
    main()
