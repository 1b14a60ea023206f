"""Run folders never lie: a train killed after each of its writes leaves the old complete run or
the new complete run (evaluate and recall give that run's numbers), a killed first run resumes
from its staging folder, two writers never share a folder, and files get the user's umask."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from rechub_core import io as rechub_io
from rechub_core import run_folder
from rechub_core.cli import make_app
from rechub_core.config import RunConfig, config_from_dict, save_config
from rechub_core.errors import CheckpointError
from rechub_core.runs import load_run, recall, train_run

TINY = {
    "model": {
        "name": "DSSM",
        "params": {"embed_dim": 8, "user_params": {"dims": [16]}, "item_params": {"dims": [16]}},
    },
    "data": {"source": "synthetic", "synthetic_users": 60, "synthetic_items": 40, "max_len": 10},
    "train": {"epochs": 1, "batch_size": 64, "seed": 1},
}


def _cfg(seed: int, **train: int) -> RunConfig:
    cfg = config_from_dict(TINY)
    return attrs.evolve(cfg, train=attrs.evolve(cfg.train, seed=seed, **train))


def _numbers(run: Path) -> tuple[dict[str, float], dict[str, float], pd.DataFrame]:
    """(saved test metrics, re-evaluated metrics, top-5 of every user) of a run folder."""
    loaded = load_run(run)
    saved = json.loads((run / "metrics.json").read_text())["test"]
    evaluated = loaded.trainer().evaluate(loaded.user_loader())
    return saved, evaluated, recall(loaded, None, 5)


def _train_killed_after(k: int, cfg: RunConfig, out: Path) -> int:
    """Train in a forked child that SIGKILLs itself after its k-th write; its wait status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            os.environ[rechub_io.FAULT_ENV] = str(k)
            rechub_io._writes_done = 0
            train_run(cfg, out, verbose=False)
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # forked children train single-threaded (no OpenMP pool to copy)
    yield
    torch.set_num_threads(threads)


def test_a_train_killed_after_every_write_leaves_the_old_or_the_new_run(tmp_path: Path) -> None:
    old_cfg, new_cfg = _cfg(seed=1), _cfg(seed=2)
    pristine = tmp_path / "pristine"
    train_run(old_cfg, pristine, verbose=False)
    before = rechub_io._writes_done
    train_run(new_cfg, tmp_path / "reference", verbose=False)
    n_writes = rechub_io._writes_done - before
    old = _numbers(pristine)
    new = _numbers(tmp_path / "reference")
    assert old[0] != new[0], "the two runs must be told apart by their numbers"
    old_id = run_folder.run_id(pristine)

    run = tmp_path / "run"
    outcomes = []
    for k in range(1, n_writes + 1):
        if run_folder.run_id(run) != old_id:  # the previous kill came after the commit
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(pristine, run)
        status = _train_killed_after(k, new_cfg, run)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (k, status)
        saved, evaluated, frame = _numbers(run)
        assert evaluated == pytest.approx(saved, abs=1e-6), f"metrics.json lies after write {k}"
        which = "old" if run_folder.run_id(run) == old_id else "new"
        expected = old if which == "old" else new
        assert saved == pytest.approx(expected[0], abs=1e-6), (k, which)
        pd.testing.assert_frame_equal(frame, expected[2], check_exact=False, atol=1e-5)
        outcomes.append(which)
    # every write before the commit leaves the old run, every point after it the new one
    assert outcomes[0] == "old" and outcomes[-1] == "new", outcomes
    assert outcomes == sorted(outcomes, key=["old", "new"].index), outcomes
    # the killed writers left their lock file and staging folder: the next train takes both over
    assert run_folder.lock_path(run).exists()
    train_run(old_cfg, run, verbose=False)
    assert not run_folder.lock_path(run).exists() and not run_folder.staging_path(run).exists()
    assert _numbers(run)[0] == pytest.approx(old[0], abs=1e-6)


def test_a_killed_first_run_names_resume_and_resumes_from_staging(tmp_path: Path) -> None:
    cfg = _cfg(seed=3)
    before = rechub_io._writes_done
    train_run(cfg, tmp_path / "reference", verbose=False)
    ref = json.loads((tmp_path / "reference" / "metrics.json").read_text())["test"]
    # kill right after the first checkpoint (config, architecture, checkpoint, ...: the third
    # write)
    run = tmp_path / "run"
    assert rechub_io._writes_done - before > 3
    assert os.WIFSIGNALED(_train_killed_after(3, cfg, run))
    assert not run.exists() and (run_folder.staging_path(run) / "checkpoint.pt").is_file()
    with pytest.raises(CheckpointError, match=r"rechub train --resume --out .*run"):
        load_run(run)
    result = CliRunner().invoke(make_app(), ["train", "--resume", "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert not run_folder.staging_path(run).exists()
    saved, evaluated, _ = _numbers(run)
    assert saved == pytest.approx(ref, abs=1e-6) and evaluated == pytest.approx(ref, abs=1e-6)


def test_a_dead_writers_lock_is_taken_over_and_files_get_the_umask(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_folder.lock_path(run).write_text("999999\n")  # left by a process that died
    old_mask = os.umask(0o027)
    try:
        train_run(_cfg(seed=4), run, verbose=False)
    finally:
        os.umask(old_mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in run.iterdir()}
    assert set(modes.values()) == {0o640}, modes
    assert not run_folder.lock_path(run).exists()
    held = rf"being written by process {os.getpid()}"  # a live holder: a writer is told its pid
    with run_folder.RunLock(run), pytest.raises(CheckpointError, match=held):
        train_run(_cfg(seed=4), run, verbose=False)


def test_two_concurrent_trains_into_one_folder_one_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    save_config(_cfg(seed=5, epochs=3), cfg)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "rechub_core.cli", "train", str(cfg), "--out", str(run)]
    procs = [
        subprocess.Popen(
            [*cmd, "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1], (codes, outputs)
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    message = " ".join(outputs[loser].split())
    assert f"being written by process {procs[winner].pid}" in message, message
    assert "Traceback" not in outputs[loser]
    saved, evaluated, _ = _numbers(run)
    assert evaluated == pytest.approx(saved, abs=1e-6)


def test_a_run_replaced_after_loading_is_not_mixed_with_the_new_index(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_run(_cfg(seed=6), run, verbose=False)
    loaded = load_run(run)
    assert len(recall(loaded, None, 3)) > 0
    train_run(_cfg(seed=7), run, verbose=False)  # commits over the loaded run
    with pytest.raises(CheckpointError, match="replaced by a newer run"):
        recall(loaded, None, 3)  # its model with the new run's index would be a mix
    assert len(recall(load_run(run), None, 3)) > 0


def _fake_run(folder: Path, tag: str) -> None:
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(tag)


def test_commit_without_renameat2_and_recovery_of_a_commit_killed_between_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the atomic exchange is unavailable the old run is renamed aside, the new one in,
    and the old one deleted; a writer killed between the two renames leaves a complete
    staging folder that the next writer renames in."""
    run = tmp_path / "run"
    _fake_run(run, "old")
    _fake_run(run_folder.staging_path(run), "new")
    monkeypatch.setattr(run_folder, "_exchange", lambda a, b: False)
    assert run_folder.commit(run_folder.staging_path(run), run) is None
    assert (run / "config.toml").read_text() == "new" and run_folder.run_id(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]

    new_id = run_folder.run_id(run)
    os.rename(run, run_folder.staging_path(run))  # as if killed after renaming the old aside
    with pytest.raises(CheckpointError, match=r"being committed.*rechub train --resume"):
        run_folder.check_complete(run)
    with run_folder.RunLock(run):
        run_folder.prepare_staging(run, resume=False)
    assert run_folder.run_id(run) == new_id and (run / "config.toml").read_text() == "new"
    assert not any(run_folder.staging_path(run).iterdir())


def test_force_moves_a_users_folder_aside_instead_of_deleting_it(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="--force"):
        run_folder.check_target(mine, force=False)
    _fake_run(run_folder.staging_path(mine), "new")
    kept = run_folder.commit(run_folder.staging_path(mine), mine)
    assert kept is not None and (kept / "notes.txt").read_text() == "keep me"
    assert (mine / "config.toml").read_text() == "new"
