"""The throughput scan's table helpers: the ratio ours / theirs and the row of a stopped peer run
(``benchmarks/throughput_scan.py``; the measurements themselves are not run here)."""

from __future__ import annotations

from typing import Any

from benchmarks.throughput_scan import markdown, ratio_cell


def _ours(size: str, pps: float) -> dict[str, Any]:
    return {
        "model": "DSSM",
        "family": "dssm",
        "size": size,
        "items": 10 if size == "a" else 20,
        "positives_per_s": pps,
        "sampler": "full",
        "optimizer": "Adam",
        "load_avg": [1.0, 1.0, 1.0],
        "batch": 512,
    }


def test_ratio_only_where_both_ran() -> None:
    assert ratio_cell({"positives_per_s": 300.0}, {"positives_per_s": 100.0}) == "3.0x"
    assert ratio_cell({"positives_per_s": 300.0}, {"error": "past the time limit"}) == "-"
    assert ratio_cell({"error": "boom"}, {"positives_per_s": 100.0}) == "-"
    assert ratio_cell(None, {"positives_per_s": 100.0}) == "-"


def test_markdown_states_why_a_peer_run_did_not_run() -> None:
    theirs_ran = {
        "model": "DSSM",
        "size": "a",
        "positives_per_s": 50.0,
        "steps": 30,
        "prep_s": 4.0,
        "peak_rss_mb": 900.0,
        "load_avg": [1.0, 1.0, 1.0],
    }
    stopped = {"model": "DSSM", "size": "b", "load_avg": [1.0, 1.0, 1.0]}
    stopped["error"] = "over the memory cap of 8,192 MiB RSS | in prep"
    payload = {
        "command": "python -m benchmarks.throughput_scan --external torch-rechub",
        "machine": "Machine: test",
        "rows": [_ours("a", 100.0), _ours("b", 80.0)],
        "external_settings": {
            "steps": 30,
            "threads": 1,
            "timeout": 600,
            "prep_timeout": 420,
            "rss_cap_mb": 8192,
        },
        "external_rows": [theirs_ran, stopped],
    }
    md = markdown(payload)
    ratio_row = next(ln for ln in md.splitlines() if "| ours / theirs |" in ln)
    assert ratio_row == "| DSSM | ours / theirs | 2.0x | - |"
    theirs_row = next(ln for ln in md.splitlines() if "Torch-RecHub 0.9.0 (example)" in ln)
    assert "not run: over the memory cap of 8,192 MiB RSS / in prep" in theirs_row
    assert theirs_row.count("|") == 5  # a "|" in the reason does not add a table column


def test_load_note_claims_other_jobs_only_when_the_load_says_so(monkeypatch: Any) -> None:
    """A scan at a load below the core count says each row had a core to itself; at or above
    it, that processes shared cores. The ranges come from the rows' own load averages."""
    import benchmarks.throughput_scan as scan

    monkeypatch.setattr(scan.os, "cpu_count", lambda: 2)
    quiet = {"rows": [_ours("a", 100.0), _ours("b", 90.0)]}
    quiet["rows"][1]["load_avg"] = [1.6, 1.0, 1.0]
    note = scan._load_note(quiet)
    assert "1.0-1.6" in note and "a core to itself" in note and "shared" not in note
    busy = {"rows": [_ours("a", 100.0)], "external_rows": [_ours("b", 90.0)]}
    busy["external_rows"][0]["load_avg"] = [4.3, 4.0, 4.0]
    note = scan._load_note(busy)
    assert "1.0-4.3" in note and "shared a core" in note
    assert scan._load_note({"rows": []}) == ""
