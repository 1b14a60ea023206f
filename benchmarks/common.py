"""Shared helpers of the speed benchmarks (``prep``, ``retrieval``, ``throughput``).

* :func:`machine` describes the machine a result was measured on (cores, CPU, Python, torch,
  date, load average), so every results file says where its numbers come from.
* :func:`run_measured` runs one worker command in its own process and returns the JSON it
  prints on its last stdout line, its wall time and its **own** peak RSS (``ru_maxrss`` of that
  child from ``wait4``), stopping it at a time limit (and optionally at an RSS cap), so that a
  stopped run still yields a lower bound.
* :func:`write_results` writes ``NAME.json`` and ``NAME.md`` into the results folder.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / ".work"
TRH_PYTHON = ROOT / "benchmarks" / ".venvs" / "torch-rechub" / "bin" / "python"
OUR_PYTHON = Path(sys.executable)


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    """The checked-out commit, with ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def machine_busy(load1: float) -> bool:
    """Whether a 1-minute load average says other jobs shared the cores: at least one runnable
    process per core (a measured one-thread process alone keeps it below the core count)."""
    return load1 >= (os.cpu_count() or 1)


def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels use here, and whether matrix products run
    natively in bfloat16 (what ``logits_dtype = "auto"`` reads): e.g. ``"AVX512, bfloat16
    native"`` or ``"AVX2, no native bfloat16"``. A full-softmax epoch differs by about 1.3x
    between the two (``results/scale.md``), so every timing names it."""
    import torch

    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    bf16 = "bfloat16 native" if native else "no native bfloat16"
    return f"{torch.backends.cpu.get_cpu_capability()}, {bf16}"


def machine() -> dict[str, Any]:
    """Where and when a benchmark ran: cores, CPU, memory, Python, torch, date, load, commit."""
    import torch

    mem_gb = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem_gb = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "cpu_capability": cpu_capability(),
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": git_commit(),
    }


def machine_line(info: dict[str, Any]) -> str:
    """One markdown line describing :func:`machine`'s dict."""
    load = ", ".join(f"{x:.2f}" for x in info["load_average_at_start"])
    return (
        f"Machine: {info['cores']} cores ({info['cpu']}"
        + (f"; {info['cpu_capability']}" if "cpu_capability" in info else "")
        + f"), {info['memory_gb']} GB RAM, "
        f"Python {info['python']}, torch {info['torch']}; measured {info['date']} "
        f"(load average at start {load}"
        + (f"; commit {info['git_commit']}" if "git_commit" in info else "")
        + ")"
    )


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run, e.g. ``python -m benchmarks.prep --quick``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", module, *(shlex.quote(a) for a in args)])


def _rss_mb(pid: int) -> float:
    """Current resident set size of ``pid`` in MiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def run_measured(
    cmd: Sequence[str],
    timeout_s: float,
    rss_cap_mb: float | None = None,
    env: dict[str, str] | None = None,
    poll_s: float = 0.2,
) -> dict[str, Any]:
    """Run ``cmd`` as one child process and measure it.

    The child is expected to print one JSON object on its last stdout line. It is sent SIGTERM
    (then SIGKILL after 10 s) when it runs past ``timeout_s`` or its RSS exceeds
    ``rss_cap_mb``.

    Returns:
        ``{"returncode", "wall_s", "peak_rss_mb" (the child's own ru_maxrss), "timed_out",
        "memory_capped", "result" (the parsed JSON or None), "stderr_tail"}``.
    """
    with (
        tempfile.TemporaryFile(mode="w+") as out,
        tempfile.TemporaryFile(mode="w+") as err,
    ):
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=err, cwd=ROOT, env={**os.environ, **(env or {})}
        )
        timed_out = capped = False
        stop_sent: float | None = None
        status = 0
        rusage: Any = None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            elapsed = time.perf_counter() - start
            if stop_sent is None:
                if elapsed > timeout_s:
                    timed_out = True
                elif rss_cap_mb is not None and _rss_mb(proc.pid) > rss_cap_mb:
                    capped = True
                if timed_out or capped:
                    proc.send_signal(signal.SIGTERM)
                    stop_sent = elapsed
            elif elapsed - stop_sent > 10:
                proc.kill()
            time.sleep(poll_s)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    result = None
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            break
    return {
        "returncode": proc.returncode,
        "wall_s": wall,
        "peak_rss_mb": rusage.ru_maxrss / 1024.0 if rusage is not None else None,
        "timed_out": timed_out,
        "memory_capped": capped,
        "result": result,
        "stderr_tail": stderr[-1500:],
    }


def write_results(
    name: str, payload: dict[str, Any], markdown: str, out: Path | None = None
) -> None:
    """Write ``out/NAME.json`` (``payload``) and ``out/NAME.md`` (``markdown``); ``out``
    defaults to ``benchmarks/results``."""
    out = RESULTS if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (out / f"{name}.md").write_text(markdown.rstrip() + "\n")


def publish(
    name: str,
    module: str,
    argv: Sequence[str] | None,
    info: dict[str, Any],
    res: dict[str, Any],
    markdown: Callable[[dict[str, Any], str, dict[str, Any]], str],
    out: Path | None = None,
) -> str:
    """Write ``NAME.json`` (the command, :func:`machine`'s ``info`` and ``res``) and ``NAME.md``
    (``markdown(res, command, info)``) with :func:`write_results`; returns the markdown."""
    command = command_line(module, argv)
    md = markdown(res, command, info)
    write_results(name, {"command": command, "machine": info, **res}, md, out)
    return md


def fmt(x: Any, digits: int = 2) -> str:
    """A table cell: floats with ``digits`` decimals, None and NaN as ``-``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def rss_now_mb() -> float:
    """This process's current RSS in MiB."""
    return _rss_mb(os.getpid())


def peak_rss_self_mb() -> float:
    """This process's peak RSS so far in MiB (``ru_maxrss``)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
