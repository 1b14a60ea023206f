"""End to end through the command line: train -> evaluate -> export -> recall, run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rechub_core.cli import make_app
from rechub_core.runs import load_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ytdnn"
    result = runner.invoke(
        make_app(),
        [
            "train",
            "--model",
            "YoutubeDNN",
            "--data",
            "synthetic",
            "--epochs",
            "3",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "MostPop" in result.output
    return out


def test_run_folder_holds_everything(run_dir: Path) -> None:
    for name in (
        "config.toml",
        "schema.json",
        "encoders.json",
        "model.pt",
        "checkpoint.pt",
        "metrics.json",
        "curve.png",
        "users.pt",
        "index.npz",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "YoutubeDNN"
    assert metrics["test"]["ndcg@10"] > metrics["mostpop_test"]["ndcg@10"]
    assert len(metrics["history"]) == 3
    assert not list(run_dir.glob(".*.tmp")), "atomic writes leave no temp files"


def test_evaluate_reproduces_the_saved_metrics(run_dir: Path) -> None:
    result = runner.invoke(make_app(), ["evaluate", str(run_dir)])
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert f"{saved['ndcg@10']:.4f}" in result.output


def test_export_writes_both_towers(run_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(make_app(), ["export", str(run_dir), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "user_tower.onnx").is_file() and (tmp_path / "item_tower.onnx").is_file()


def test_recall_all_users_beats_most_popular(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.csv"
    result = runner.invoke(
        make_app(), ["recall", str(run_dir), "--users", "all", "-k", "50", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(out)
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    loaded = load_run(run_dir)
    users = loaded.encoders["user_id"].inverse(loaded.users["inputs"]["user_id"].numpy())
    targets = loaded.encoders["item_id"].inverse(loaded.users["target"].numpy())
    assert recs.groupby("user_id").size().eq(50).all() and recs["user_id"].nunique() == len(users)
    # seen items never come back
    indptr, indices = loaded.users["seen_indptr"].numpy(), loaded.users["seen_indices"].numpy()
    seen_raw = loaded.encoders["item_id"].inverse(indices[indptr[0] : indptr[1]])
    first = recs[recs["user_id"] == users[0]]["item_id"]
    assert not set(first) & set(seen_raw)
    truth = pd.DataFrame({"user_id": users, "target": targets})
    merged = recs.merge(truth, on="user_id")
    hit50 = (
        merged.assign(hit=merged["item_id"] == merged["target"])
        .groupby("user_id")["hit"]
        .any()
        .mean()
    )
    mostpop = json.loads((run_dir / "metrics.json").read_text())["mostpop_test"]["hit@50"]
    assert hit50 > mostpop
    assert hit50 == pytest.approx(
        json.loads((run_dir / "metrics.json").read_text())["test"]["hit@50"], abs=0.02
    )


def test_recall_one_user_prints_items(run_dir: Path) -> None:
    loaded = load_run(run_dir)
    raw = loaded.encoders["user_id"].inverse(loaded.users["inputs"]["user_id"][:1].numpy())[0]
    result = runner.invoke(make_app(), ["recall", str(run_dir), "--user", str(raw), "-k", "5"])
    assert result.exit_code == 0, result.output
    assert "top 5" in result.output
    bad = runner.invoke(make_app(), ["recall", str(run_dir), "--user", "not-a-user", "-k", "5"])
    assert bad.exit_code == 1 and "error" in bad.output


def test_train_on_a_users_own_csv_with_string_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [
        (f"u{u}", f"item-{(u + t) % 40}", t)
        for u in range(60)
        for t in range(int(rng.integers(6, 12)))
    ]
    log = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["uid", "iid", "ts"]).to_csv(log, index=False)
    out = tmp_path / "run"
    args = [
        "train",
        "--model",
        "DSSM",
        "--data",
        str(log),
        "--user-col",
        "uid",
        "--item-col",
        "iid",
    ]
    args += ["--time-col", "ts", "--epochs", "1", "--out", str(out), "--quiet"]
    result = runner.invoke(make_app(), args)
    assert result.exit_code == 0, result.output
    result = runner.invoke(make_app(), ["recall", str(out), "--user", "u3", "-k", "3"])
    assert result.exit_code == 0 and "item-" in result.output
    missing = runner.invoke(
        make_app(), ["train", "--model", "DSSM", "--data", str(log), "--out", str(out)]
    )
    assert missing.exit_code == 1 and "--user-col" in missing.output


def test_unknown_model_and_unwritable_run_folder(tmp_path: Path) -> None:
    result = runner.invoke(
        make_app(), ["train", "--model", "NoSuchModel", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1 and "available models" in result.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(make_app(), ["train", "--model", "DSSM", "--out", str(blocker / "run")])
    assert result.exit_code == 1 and "not writable" in " ".join(result.output.split())
