"""The standard benchmark's time accounting: the two-at-a-time schedule of its cells and the
"Time" section of ``standard.md`` (``benchmarks/standard.py``; no model is trained here)."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from benchmarks.standard import schedule, time_summary, two_job_hours

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
