"""Faults: a run killed with SIGKILL resumes to the metrics of an unbroken run; checkpoints of
another model or format are refused by name; full or unwritable disks fail before training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rechub_core import io as rechub_io
from rechub_core.config import load_config
from rechub_core.data import BatchLoader, MatchDataGenerator
from rechub_core.errors import CheckpointError
from rechub_core.features import SequenceFeature, SparseFeature
from rechub_core.io import load_torch, save_torch
from rechub_core.runs import train_run
from rechub_core.towers import ItemEmbeddingTower, MLPTower, TwoTowerModel
from rechub_core.trainer import FORMAT_VERSION, MatchTrainer, load_weights

RUN_CONFIG = """
[model]
name = "DSSM"
[model.params]
embed_dim = 16
user_params = { dims = [64, 32], dropout = 0.1 }
item_params = { dims = [64, 32] }
[data]
source = "synthetic"
synthetic_users = 400
synthetic_items = 200
max_len = 20
[train]
mode = 2
epochs = 3
batch_size = 64
[loss]
name = "sampled_softmax"
params = { logq_correction = true }
[sampler]
name = "mixed"
params = { n_uniform = 32 }
"""


def _one_thread() -> int:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed subprocess runs with OMP_NUM_THREADS=1 too
    return threads


def test_a_run_killed_mid_epoch_resumes_to_the_metrics_of_an_unbroken_run(
    tmp_path: Path,
) -> None:
    """SIGKILL right after the first epoch's checkpoint appears (so during epoch 1), then
    ``train_run(..., resume=True)`` from the run folder alone: same per-epoch validation
    metrics and same test metrics as an unbroken run with the same seed (dropout and the
    mixed sampler's uniform draws make the RNG matter), and no partial or stray files."""
    config = tmp_path / "run.toml"
    config.write_text(RUN_CONFIG)
    broken = tmp_path / "broken"
    staging = tmp_path / "broken.staging"  # where a train writes until it commits
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "rechub_core.cli", "train", str(config)]
    proc = subprocess.Popen(
        [*cmd, "--out", str(broken), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not (staging / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # what the killed run left is whole: its config and an epoch checkpoint (epoch 0, or 1 if
    # this process was descheduled for a whole epoch), and no final weights
    assert load_torch(staging / "checkpoint.pt")["epoch"] in (0, 1)
    assert not (staging / "model.pt").exists() and not (staging / "metrics.json").exists()
    assert not broken.exists(), "nothing is visible at the run folder before the commit"
    (staging / ".checkpoint.pt.x1y2z3.tmp").write_bytes(b"partial")  # as if killed mid-write

    threads = _one_thread()
    try:
        resumed = train_run(load_config(staging / "config.toml"), broken, False, resume=True)
        unbroken = train_run(load_config(config), tmp_path / "unbroken", verbose=False)
    finally:
        torch.set_num_threads(threads)
    assert [int(h["epoch"]) for h in resumed.history] == [0, 1, 2]
    for a, b in zip(resumed.history, unbroken.history, strict=True):
        val = [k for k in a if k.startswith("val_")]
        assert val and {k: a[k] for k in val} == pytest.approx({k: b[k] for k in val}, abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert resumed.metrics == pytest.approx(unbroken.metrics, abs=1e-6)
    saved = json.loads((broken / "metrics.json").read_text())
    assert saved["test"] == pytest.approx(unbroken.metrics, abs=1e-6)
    assert not list(broken.glob(".*.tmp")), "the stale temporary file was removed"
    assert not staging.exists() and (broken / "run.json").is_file()
    for name in ("model.pt", "checkpoint.pt", "users.pt"):
        load_torch(broken / name)  # every file reads back


# --- checkpoints that do not belong -----------------------------------------------------------


def _tiny(dim: int = 4) -> TwoTowerModel:
    user = [
        SparseFeature("user_id", 5, dim),
        SequenceFeature("hist", 7, dim, pooling="mean", shared_with="item_id"),
    ]
    return TwoTowerModel(
        MLPTower(user, dims=[dim]), ItemEmbeddingTower(SparseFeature("item_id", 7, dim))
    )


class OtherModel(TwoTowerModel):
    """The same layers under another class name."""


def test_checkpoints_of_another_model_or_format_name_both_sides(tmp_path: Path) -> None:
    from rechub_core import __version__

    model = _tiny()
    payload = {
        "format": FORMAT_VERSION,
        "rechub_version": __version__,
        "model_class": "TwoTowerModel",
        "state_dict": model.state_dict(),
    }
    save_torch(tmp_path / "model.pt", payload)
    load_weights(_tiny(), load_torch(tmp_path / "model.pt"), "model.pt")  # fits

    other = OtherModel(model.user_tower, model.item_tower)
    with pytest.raises(CheckpointError, match=r"weights of TwoTowerModel .*not OtherModel"):
        load_weights(other, payload, "model.pt")
    old = {**payload, "format": 99, "rechub_version": "9.9.9"}
    with pytest.raises(CheckpointError) as err:
        load_weights(_tiny(), old, "model.pt")
    message = str(err.value)
    assert "format 99" in message and "9.9.9" in message
    assert f"format {FORMAT_VERSION}" in message and __version__ in message
    with pytest.raises(CheckpointError, match="does not fit") as err:
        load_weights(_tiny(dim=8), payload, "model.pt")
    assert "saved (" in str(err.value) and "[model.params]" in str(err.value)
    # a checkpoint written from a DistributedDataParallel wrapper loads into a plain model
    wrapped = {**payload, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    load_weights(_tiny(), wrapped, "model.pt")


def _tiny_loader() -> BatchLoader:
    x = {
        "user_id": np.array([1, 2, 3, 4]),
        "hist": np.array([[1, 2, 0], [2, 3, 4], [5, 0, 0], [6, 1, 0]]),
        "item_id": np.array([3, 4, 1, 2]),
    }
    train, _, _ = MatchDataGenerator(x).generate_dataloader(
        {"user_id": x["user_id"]}, {"item_id": np.arange(7)}, batch_size=2
    )
    return train


def test_resuming_from_another_models_checkpoint_fails_before_training(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trainer = MatchTrainer(_tiny(), model_path=tmp_path, verbose=False, n_epoch=1)
    train = _tiny_loader()
    trainer.fit(train)
    other = MatchTrainer(_tiny(dim=8), model_path=tmp_path, verbose=False, n_epoch=2)
    with pytest.raises(CheckpointError, match="does not fit"):
        other.fit(train, resume=True)


# --- disks ------------------------------------------------------------------------------------


def test_a_full_disk_fails_before_training_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rechub_core.config import config_from_dict

    real = rechub_io.shutil.disk_usage

    def almost_full(path: object) -> object:
        usage = real(path)  # type: ignore[arg-type]
        return type(usage)(usage.total, usage.total - 2**20, 2**20)  # 1 MiB free

    monkeypatch.setattr(rechub_io.shutil, "disk_usage", almost_full)
    trainer = MatchTrainer(_tiny(), model_path=tmp_path / "trainer", verbose=False)  # reading ok
    with pytest.raises(CheckpointError, match=r"only 1 MiB free.*needs about"):
        trainer.fit(_tiny_loader())
    assert trainer.history == [] and not (tmp_path / "trainer" / "checkpoint.pt").exists()
    cfg = config_from_dict({"model": {"name": "DSSM"}, "train": {"epochs": 1}})
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="free"):
        train_run(cfg, tmp_path / "run", verbose=False)
    assert time.perf_counter() - start < 5, "fails before preparing data or training"
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
