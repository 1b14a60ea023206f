"""Fake plugin sources and small helpers shared by the plugin tests (plain code; the fixtures
live in ``plugin_fixtures``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rechub_core import plugins
from rechub_core.plugins import PluginInfo

GOOD = """\
class Built:
    def __init__(self, **params):
        self.params = params

@hookimpl
def rechub_register_models():
    yield ModelSpec(name="GoodModel", factory=Built, family="fake", description="a fake model")

@hookimpl
def rechub_register_towers():
    yield TowerSpec(name="Good-Tower", factory=Built)
    yield TowerSpec(name="good_mlp", factory=Built)
"""

BROKEN = """\
raise RuntimeError("boom: native library missing")
"""


def clashing(own: str) -> str:
    return f"""\
@hookimpl
def rechub_register_models():
    yield ModelSpec(name="TwinTower", factory=dict)
    yield ModelSpec(name="{own}", factory=dict)
"""


def by_name(infos: list[PluginInfo]) -> dict[str, PluginInfo]:
    return {i.name: i for i in infos}


def only(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Load only these entry points (keeps the real plugins out of the fake-site tests)."""
    monkeypatch.setenv(plugins.ENV_PLUGINS, ",".join(names))


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command of an isolated-install test (output captured, at most 300 s)."""
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def rechub_command() -> list[str]:
    """The ``rechub`` command of this environment (its script, else ``python -m``)."""
    script = Path(sys.executable).with_name("rechub")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rechub_core.cli"]
