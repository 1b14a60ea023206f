"""The standard benchmark's bookkeeping: the two-at-a-time schedule of its cells, the "Time"
section of ``standard.md``, and ``--merge`` of rows trained elsewhere (``benchmarks/standard.py``;
no model is trained here)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.common import RESULTS
from benchmarks.standard import main, merge_results, schedule, time_summary, two_job_hours

CELL_SECONDS = st.lists(st.floats(min_value=1.0, max_value=1e4), min_size=1, max_size=50)


@given(CELL_SECONDS, st.integers(min_value=1, max_value=4))
def test_schedule_hours_within_the_longest_first_bounds(seconds: list[float], jobs: int) -> None:
    hours = two_job_hours(seconds, jobs) * 3600
    lower = max(max(seconds), sum(seconds) / jobs)
    assert lower - 1e-6 <= hours <= sum(seconds) / jobs + max(seconds) + 1e-6
    assert math.isclose(two_job_hours(seconds, 1) * 3600, sum(seconds), rel_tol=1e-9)


def test_two_jobs_pair_long_with_short() -> None:
    # 3 + 1 and 2 + 2 -> 4 h: longest first puts 3 and 2 on different workers
    assert two_job_hours([3600, 7200, 3600 * 3, 7200]) == 4.0


def _row(data: str, model: str, wall: float, **extra: Any) -> dict[str, Any]:
    return {
        "data": data,
        "library": "rechub",
        "model": model,
        "wall_seconds": wall,
        "metrics": {"ndcg@10": 0.1},
        "load_average": [2.0, 2.0, 2.0],
    } | extra


def test_schedule_runs_unknown_and_large_cells_first() -> None:
    rows = [
        _row("toys", "A", 100.0),
        _row("yelp", "A", 50.0),
        _row("sports", "A", 10.0, epochs_cap=1),  # a smoke row's time says nothing
    ]
    pairs = [("ml-100k", "B"), ("toys", "A"), ("yelp", "A"), ("sports", "A"), ("yelp", "B")]
    assert schedule(pairs, rows) == [
        ("yelp", "B"),
        ("sports", "A"),
        ("ml-100k", "B"),
        ("toys", "A"),
        ("yelp", "A"),
    ]


def test_time_section_sums_each_data_set_and_the_schedule() -> None:
    payload = {
        "rows": [
            _row("toys", "A", 1800.0),
            _row("toys", "B", 3600.0),
            _row("yelp", "A", 5400.0),
            _row("yelp", "B", 60.0, error="boom"),  # failed cells are not counted
        ]
    }
    text = "\n".join(time_summary(payload, ["A", "B"]))
    assert "| Amazon Toys_and_Games | 2 | 1.50 | B (60 min) |" in text
    assert "| Yelp | 1 | 1.50 | A (90 min) |" in text
    assert "| all | 3 | 3.00 | |" in text
    assert "end after **1.50 h**" in text  # 5400 on one worker, 1800 + 3600 on the other
    assert time_summary({"rows": []}, ["A"]) == []


def test_time_section_reports_each_commands_own_clock() -> None:
    run = {
        "command": "python -m benchmarks.standard --jobs 2",
        "started": "2026-12-02 10:46 UTC",
        "seconds": 8280.0,
        "cells": 48,
        "jobs": 2,
        "commit": "f46a0b9",
    }
    payload = {"rows": [_row("toys", "A", 1800.0)], "command_runs": [run]}
    text = "\n".join(time_summary(payload, ["A"]))
    assert "`python -m benchmarks.standard --jobs 2` trained 48 cells, 2 at a time" in text
    assert "in **2.30 h** (started 2026-12-02 10:46 UTC, commit f46a0b9)" in text


def _payload(rows: list[dict[str, Any]], command: str, date: str) -> dict[str, Any]:
    return {
        "seed": 1,
        "commands": [command],
        "command_runs": [{"command": command, "seconds": 60.0, "cells": len(rows), "jobs": 1}],
        "machine": {
            "cores": 2,
            "cpu": "test",
            "memory_gb": 1.0,
            "python": "3.11",
            "torch": "2",
            "date": date,
            "load_average_at_start": [0.0, 0.0, 0.0],
        },
        "mostpop": {"toys": {"metrics": {"ndcg@10": 0.01}}},
        "rows": rows,
    }


def test_merge_replaces_the_chosen_cells_and_keeps_the_others() -> None:
    base = _payload(
        [_row("toys", "A", 10.0), _row("toys", "B", 10.0), _row("yelp", "A", 10.0)], "base", "d1"
    )
    peer = _row("toys", "A", 99.0) | {"library": "recbole"}
    src = _payload([_row("toys", "A", 20.0), peer, _row("yelp", "A", 30.0)], "src", "d2")
    src["mostpop"] = {"toys": {"metrics": {"ndcg@10": 0.02}}, "yelp": {"metrics": {}}}
    merged, taken = merge_results(base, src, ["toys"], ["A"])
    assert [(r["data"], r["library"]) for r in taken] == [("toys", "rechub"), ("toys", "recbole")]
    walls = {(r["data"], r["library"], r["model"]): r["wall_seconds"] for r in merged["rows"]}
    assert walls == {
        ("toys", "rechub", "A"): 20.0,  # replaced
        ("toys", "recbole", "A"): 99.0,  # added
        ("toys", "rechub", "B"): 10.0,  # not chosen: kept
        ("yelp", "rechub", "A"): 10.0,  # other data set: kept
    }
    assert merged["mostpop"] == {"toys": {"metrics": {"ndcg@10": 0.02}}}  # yelp not chosen
    assert merged["commands"] == ["base", "src"] and len(merged["command_runs"]) == 2
    assert merged["machine"]["date"] == "d2"  # the latest command's
    assert base["rows"][0]["wall_seconds"] == 10.0  # the base payload is not changed
    again, _ = merge_results(merged, src, ["toys"], ["A"])
    assert again["commands"] == ["base", "src"] and len(again["rows"]) == 4  # idempotent
    with pytest.raises(SystemExit, match="no rows for data"):
        merge_results(base, src, ["toys"], ["Typo"])


def test_merge_command_writes_the_results_files(tmp_path: Path) -> None:
    """``python -m benchmarks.standard --merge SRC`` on the committed results: OUT/NAME.json and
    .md take SRC's rows and list the merge command itself; nothing is trained."""
    base = json.loads((RESULTS / "standard.json").read_text())
    (tmp_path / "standard.json").write_text(json.dumps(base))
    src = json.loads(json.dumps(base))
    cell = ("toys", "rechub", "STAMP")
    row = next(r for r in src["rows"] if (r["data"], r["library"], r["model"]) == cell)
    row["metrics"]["ndcg@10"] = 0.5
    src["commands"].append("python -m benchmarks.standard --only toys --models STAMP")
    (tmp_path / "src.json").write_text(json.dumps(src))
    argv = ["--merge", str(tmp_path / "src.json"), "--only", "toys", "--models", "STAMP"]
    main([*argv, "--out", str(tmp_path)])
    merged = json.loads((tmp_path / "standard.json").read_text())
    stamp = [r for r in merged["rows"] if (r["data"], r["library"], r["model"]) == cell]
    assert [r["metrics"]["ndcg@10"] for r in stamp] == [0.5]
    assert len(merged["rows"]) == len(base["rows"])
    assert merged["commands"][-2:-1] == ["python -m benchmarks.standard --only toys --models STAMP"]
    assert merged["commands"][-1].startswith("python -m benchmarks.standard --merge")
    text = (tmp_path / "standard.md").read_text()
    assert "| STAMP | 0.5000 |" in text and "--merge" in text
    with pytest.raises(SystemExit):
        main([*argv, "--out", str(tmp_path), "--resume"])  # --merge trains nothing
    with pytest.raises(SystemExit, match="does not exist"):
        main([*argv, "--out", str(tmp_path / "nowhere")])
