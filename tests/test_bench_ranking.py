"""benchmarks/ranking.py: both variants give the same ranks, and the report renders."""

from __future__ import annotations

from benchmarks.common import machine
from benchmarks.ranking import measure, to_markdown


def test_ranking_benchmark_variants_agree_and_render() -> None:
    res = measure(1, shapes=(("tiny", 50, 9_000),))  # 2**21 // 9,001 = 232 users a chunk
    assert [r["what"] for r in res["rows"]] == [
        "model, 1 vector(s) a user",
        "model, 4 vector(s) a user",
        "MostPop",
    ]
    assert all(r["equal"] for r in res["rows"])
    assert res["rows"][0]["new_chunk"] == 232 and res["rows"][2]["new_chunk"] is None
    md = to_markdown(
        {"load_average": [1.0, 1.0, 1.0], "threads": 1, **res}, "python -m x", machine()
    )
    assert "| tiny (50 x 9,000) | MostPop |" in md and "NO" not in md
