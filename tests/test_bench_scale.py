"""benchmarks/scale.py's report text: what it says about the load and the 1M-item DDP rows
follows the measured numbers (the measurements themselves are not run here)."""

from __future__ import annotations

from typing import Any


def test_scale_reports_say_what_the_load_and_the_ddp_rows_show(monkeypatch: Any) -> None:
    """benchmarks/scale.py: 'other jobs were running' only at a load of at least the core
    count; the 1M-item DDP sentence states the measured ratio, slower or faster."""
    import benchmarks.scale as scale

    monkeypatch.setattr(scale.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(scale.os, "getloadavg", lambda: (1.0, 1.2, 1.5))
    assert scale.SHARED not in scale._machine()
    monkeypatch.setattr(scale.os, "getloadavg", lambda: (2.5, 1.2, 1.5))
    assert scale.SHARED in scale._machine()

    def run(world: int, pps: float, load: float) -> dict[str, Any]:
        return {"world": world, "positives_per_s": pps, "load": [load, 1.0, 1.0]}

    quiet = scale._ddp_reading([run(2, 16_000.0, 1.9), run(1, 32_000.0, 1.6)])
    assert "slower here (0.50x" in quiet and "a core each" in quiet
    busy = scale._ddp_reading([run(2, 40_000.0, 4.2), run(1, 20_000.0, 3.9)])
    assert "faster here (2.00x" in busy and "busy with other jobs" in busy
    assert scale._ddp_reading([run(1, 20_000.0, 1.0)]) == ""


def test_toys_report_names_each_codes_threads_and_the_background_jobs() -> None:
    """``scale toys --threads 0 --background 1``: the section says what ran beside the runs,
    each row shows the thread count its code chose, and the ratio is old over new."""
    import argparse

    import benchmarks.scale as scale

    def run(code: str, threads: int, seconds: float) -> dict[str, Any]:
        return {
            "model": "DSSM",
            "code": code,
            "code_root": f"/tmp/{code}",
            "threads": threads,
            "sampler": "full" if code == "old" else "auto",
            "train_epoch_s": [seconds, seconds],
            "positives_per_s": [1000.0, 1000.0],
            "fit_s": 2 * seconds + 2,
            "epochs": 2,
            "val_ndcg@10": [0.01, 0.02],
            "load_before": [1.0, 1.0, 1.0],
            "load_avg": [2.0, 1.0, 1.0],
        }

    settings = {
        "threads": 0,
        "background": 1,
        "background_threads": 2,
        "background_warmup": 90.0,
    }
    args = argparse.Namespace(**settings)
    result = {
        "command": "python -m benchmarks.scale toys --threads 0 --background 1",
        "machine": "test",
        "settings": settings,
        "runs": [run("old", 2, 60.0), run("new", 1, 5.0)],
    }
    text = scale._toys_markdown(result, scale._toys_title(args))
    assert "each code's default threads, next to 1 2-thread job(s)" in text
    assert "| DSSM | old (old), 2 thread(s) | full |" in text
    assert "| DSSM | new (new), 1 thread(s) | auto |" in text
    assert "next to 1 CPU-bound job(s) of 2 thread(s) each" in text
    assert "new/old speed-up 12.0x per training epoch" in text
    pinned = {**result, "settings": {"threads": 2, "background": 0, "background_warmup": 0}}
    text = scale._toys_markdown(pinned)
    assert "2 thread(s), old and new runs interleaved" in text
    assert "| DSSM | old (old) | full |" in text and "CPU-bound" not in text


def test_background_jobs_run_for_the_body_and_are_killed_after() -> None:
    """The contended toys benchmark's background jobs live exactly as long as its runs."""
    import benchmarks.scale as scale

    with scale._background_jobs(2, 0.0, threads=2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)
    try:
        with scale._background_jobs(1, 0.0) as procs:
            raise RuntimeError("a run failed")
    except RuntimeError:
        pass
    assert procs[0].poll() is not None


def test_machine_lines_name_the_cpus_vector_instructions() -> None:
    """Timings differ ~1.3x between an AVX512-BF16 and an AVX2 host, so every machine line says
    which one ran; lines of results written before the field existed still render."""
    from benchmarks.common import cpu_capability, machine, machine_line

    capability = cpu_capability()
    known = {"AVX2", "AVX512", "DEFAULT", "Z VECTOR", "VSX", "NO AVX", "SVE256"}
    assert capability.split(",")[0] in known
    assert capability.endswith(("bfloat16 native", "no native bfloat16"))
    info = machine()
    assert f"; {capability})" in machine_line(info)
    older = {k: v for k, v in info.items() if k != "cpu_capability"}
    assert f"({older['cpu']})" in machine_line(older)
