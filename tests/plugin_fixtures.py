"""Helpers for plugin tests: fake installed distributions and an isolated process-wide host.

A fake distribution is a ``NAME-VERSION.dist-info`` folder (METADATA + entry_points.txt) next to
the plugin's module files, in a folder put first on ``sys.path``; ``importlib.metadata`` then
finds it exactly as it finds an installed package, so no install is needed (conda's approach).
"""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from rechub_core import plugins
from rechub_core.cli import _common as cli_common
from rechub_core.plugins import PluginHost

#: Prefix of every fake module, so teardown can drop exactly the modules these tests created.
FAKE_PREFIX = "fakeplug_"

#: Module preamble shared by fake plugins.
PREAMBLE = """\
from rechub_core.hookspecs import hookimpl
from rechub_core.specs import (
    EncoderSpec, IndexSpec, LossSpec, ModelSpec, SamplerSpec, TowerSpec,
)
"""


class FakeSite:
    """A folder on ``sys.path`` holding fake distributions and their modules."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(
        self,
        dist: str,
        entry_points: dict[str, str],
        modules: dict[str, str],
        version: str = "1.0",
    ) -> None:
        """Create distribution ``dist`` whose ``rechub`` entry points are ``entry_points``
        (name -> module) and write ``modules`` (module name -> source, dedented; the
        :data:`PREAMBLE` is prepended)."""
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = ["[rechub]", *(f"{name} = {target}" for name, target in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for module, source in modules.items():
            assert module.startswith(FAKE_PREFIX), module
            text = PREAMBLE + textwrap.dedent(source)
            (self.root / f"{module}.py").write_text(text, encoding="utf-8")


def _drop_fake_modules() -> None:
    for name in [m for m in sys.modules if m.startswith(FAKE_PREFIX)]:
        del sys.modules[name]


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    """An empty fake site first on ``sys.path``; plugin env variables cleared."""
    for var in (plugins.ENV_PLUGINS, plugins.ENV_DISABLE_AUTOLOAD, plugins.ENV_TRACE):
        monkeypatch.delenv(var, raising=False)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    _drop_fake_modules()
    yield FakeSite(site)
    _drop_fake_modules()


@pytest.fixture
def global_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test change the process-wide host (through env variables); it is forgotten before
    and after, so the next user reloads plugins from the real environment."""
    for var in (plugins.ENV_PLUGINS, plugins.ENV_DISABLE_AUTOLOAD, plugins.ENV_TRACE):
        monkeypatch.delenv(var, raising=False)
    plugins.reset_host()
    yield
    plugins.reset_host()


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A wide console for the CLI (rich tables wrap at 80 columns otherwise); the root logger,
    which ``rechub train`` reconfigures, is restored afterwards."""
    monkeypatch.setattr(cli_common, "console", Console(width=250, color_system=None))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def host(monkeypatch) -> PluginHost:
    """A host with the built-ins only (no entry points: fast and isolated)."""
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    monkeypatch.delenv(plugins.ENV_PLUGINS, raising=False)
    host = PluginHost()
    host.load()  # built-ins first, as in real use
    return host
