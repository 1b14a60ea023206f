"""``rechub --help``, ``--version`` and ``list-plugins`` import neither torch nor any plugin's
model module (lazy factories and command bodies). The wall time itself is measured by
``benchmarks/cli_startup.py``, never asserted here."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

HEAVY = ("torch", "rechub_plugins_dssm.dssm", "rechub_plugins_seq.sasrec", "rechub_core.trainer")

PROBE = """
import atexit, sys
heavy = {heavy!r}
atexit.register(lambda: print("LOADED", [m for m in heavy if m in sys.modules], file=sys.stderr))
sys.argv = ["rechub", *{args!r}]
from rechub_core.cli import main
main()
"""


def loaded_modules(args: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, args=args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED"))
    return done.returncode, ast.literal_eval(line.removeprefix("LOADED "))


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["list-plugins"], ["list-components"], ["data", "path"]]
)
def test_light_commands_import_no_torch_and_no_model_module(args):
    code, loaded = loaded_modules(args)
    assert code == 0
    assert loaded == [], f"rechub {' '.join(args)} imported {loaded}"


def test_creating_a_model_imports_its_module_on_first_use():
    code = (
        "import sys; from rechub_core.plugins import get_spec; "
        "spec = get_spec('model', 'DSSM'); assert 'rechub_plugins_dssm.dssm' not in sys.modules; "
        "spec.factory; assert 'rechub_plugins_dssm.dssm' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
