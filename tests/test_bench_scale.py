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
