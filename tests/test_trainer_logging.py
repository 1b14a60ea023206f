"""``MatchTrainer.fit`` reports progress through logging when no terminal is attached: a script
with its output redirected and no logging configured still shows epoch lines (issue #17: such
a run printed nothing for 24 minutes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    from rechub_core import trainer
    from rechub_core.config import ComponentConfig, DataConfig, RunConfig, TrainConfig
    from rechub_core.runs import train_run

    trainer.PROGRESS_LOG_SECONDS = 0.0  # log every batch, so a tiny run shows in-epoch lines
    cfg = RunConfig(
        model=ComponentConfig("DSSM", {"embed_dim": 8}),
        data=DataConfig(source="synthetic", synthetic_users=200, synthetic_items=80),
        train=TrainConfig(epochs=1),
    )
    train_run(cfg, sys.argv[1], verbose=True)
    """
)


def test_fit_logs_progress_with_output_redirected_and_no_logging_configured(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "run")],
        capture_output=True,  # not a terminal: rich's progress bar stays silent
        text=True,
        timeout=300,
        check=False,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "rechub: training up to 1 epochs" in done.stderr
    assert "rechub: epoch 0: 1/" in done.stderr  # in-epoch progress
    assert "rechub: epoch 0  loss" in done.stderr  # the epoch summary
