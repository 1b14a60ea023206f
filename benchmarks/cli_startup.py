"""Start-up time of the ``rechub`` command: ``--help``, ``--version`` and ``list-plugins``
against ``python -c "import torch"`` in the same run (target: each command <= 1 s wall).

    python -m benchmarks.cli_startup [--runs 10] [--out benchmarks/results]

Each command runs ``--runs`` times as a fresh process (``.venv/bin/rechub ...``, the console
script a user runs), commands interleaved round by round so that a burst of load elsewhere
hits all of them alike. Reported: median, min and max wall seconds, and which heavy modules
(torch, numpy, pandas, the plugins' model modules) each command imported, read from a separate
run with ``python -X importtime``. The load average before and after is recorded: on a shared
machine it explains the spread.

Writes ``cli_startup.json`` and ``cli_startup.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, command_line, machine, machine_line, write_results

BIN = Path(sys.executable).parent
HEAVY = (
    "torch",
    "numpy",
    "pandas",
    "rechub_plugins_dssm.dssm",
    "rechub_plugins_seq.sasrec",
    "rechub_plugins_multiinterest.mind",
)
COMMANDS: dict[str, list[str]] = {
    "rechub --help": [str(BIN / "rechub"), "--help"],
    "rechub --version": [str(BIN / "rechub"), "--version"],
    "rechub list-plugins": [str(BIN / "rechub"), "list-plugins"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
}


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _imported(argv: list[str]) -> list[str]:
    """Heavy modules the command imports (``-X importtime`` of the same entry point)."""
    if argv[0] == sys.executable:
        code = argv[2]
    else:
        argv_text = repr(["rechub", *argv[1:]])
        code = f"import sys; sys.argv = {argv_text}; from rechub_core.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    return [m for m in HEAVY if m in names]


def measure(runs: int, command: str) -> dict[str, Any]:
    """Wall times of every command over ``runs`` interleaved rounds, and what each imports;
    ``command`` is the command line that ran this benchmark (recorded)."""
    info = machine()  # before the timed rounds: its load average is the one at start
    for argv in COMMANDS.values():  # warm the file cache once, untimed
        _wall(argv)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            times[name].append(_wall(argv))
    load_after = os.getloadavg()
    rows = {
        name: {
            "median_s": statistics.median(ts),
            "min_s": min(ts),
            "max_s": max(ts),
            "runs": ts,
            "imports": _imported(COMMANDS[name]),
        }
        for name, ts in times.items()
    }
    return {
        "command": command,
        "machine": info,
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "results": rows,
    }


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table with the command and the machine's load."""
    before = ", ".join(f"{x:.2f}" for x in report["load_average_before"])
    after = ", ".join(f"{x:.2f}" for x in report["load_average_after"])
    lines = [
        "# rechub start-up time",
        "",
        f"`{report['command']}` (load average {before} before the timed rounds, {after} "
        f"after). Wall seconds of a fresh process, "
        f"{len(next(iter(report['results'].values()))['runs'])} runs each, interleaved.",
        "",
        machine_line(report["machine"]),
        "",
        "| command | median s | min s | max s | heavy modules imported |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["results"].items():
        imports = ", ".join(row["imports"]) or "none"
        lines.append(
            f"| `{name}` | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['max_s']:.2f} "
            f"| {imports} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = measure(args.runs, command_line("benchmarks.cli_startup", argv))
    write_results("cli_startup", report, to_markdown(report), args.out)
    print(to_markdown(report))


if __name__ == "__main__":
    main()
