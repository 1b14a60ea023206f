"""benchmarks/step_profile.py on the built-in synthetic data: the phases add up to the step,
the projection follows from them, and the report lists each phase and the top operators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.step_profile import PHASES, main


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_step_profile_report_adds_up(tmp_path: Path) -> None:
    main(
        [
            "--models",
            "DSSM,SASRec",
            "--data",
            "synthetic",
            "--steps",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--top",
            "5",
            "--out",
            str(tmp_path),
        ]
    )
    payload = json.loads((tmp_path / "step_profile.json").read_text())
    assert [r["model"] for r in payload["runs"]] == ["DSSM", "SASRec"]
    for run in payload["runs"]:
        assert list(run["phases_ms"]) == list(PHASES)
        assert all(ms >= 0 for ms in run["phases_ms"].values())
        assert sum(run["phases_ms"].values()) == pytest.approx(run["step_ms"])
        assert run["epoch_s_projected"] == pytest.approx(
            run["step_ms"] * run["steps_per_epoch"] / 1000
        )
        assert run["targets_per_step"] > 0 and run["validation_s"] > 0
        shares = [o["self_share"] for o in run["top_ops"]]
        assert len(shares) == 5 and shares == sorted(shares, reverse=True) and sum(shares) <= 1
    report = (tmp_path / "step_profile.md").read_text()
    assert "## DSSM" in report and "## SASRec" in report
    for phase in PHASES:
        assert report.count(f"| {phase} |") == 2


def test_step_profile_rejects_zero_steps(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--steps", "0", "--out", str(tmp_path)])
