"""Seed-compatible names (``rechub_core.matching``) and ``rechub list-plugins`` output."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from rechub_core import plugins
from rechub_core.cli import make_app
from rechub_core.errors import (
    PluginNotInstalledError,
)

if TYPE_CHECKING:  # imported by pytest_plugins, so that pytest rewrites its asserts
    from plugin_fixtures import FakeSite

from plugin_sources import BROKEN, GOOD, only

pytest_plugins = ["plugin_fixtures"]  # fixtures: fake_site, global_host, wide_console


# --- seed-compatible names ------------------------------------------------------------------------


def test_seed_import_resolves_through_registry(global_host):
    from rechub_core.matching import DSSM, YoutubeDNN

    assert DSSM is plugins.get_spec("model", "DSSM").factory
    assert DSSM.__name__ == "DSSM"
    assert YoutubeDNN.__module__ == "rechub_plugins_dssm.youtube_dnn"


def test_seed_import_of_any_plugins_model(fake_site: FakeSite, global_host, monkeypatch):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    only(monkeypatch, "good")
    plugins.reset_host()
    from rechub_core.matching import GoodModel

    assert GoodModel.__name__ == "Built"
    with pytest.raises(ImportError) as err:
        from rechub_core.matching import NoSuchModel  # noqa: F401
    assert not isinstance(err.value, PluginNotInstalledError)


def test_known_model_without_its_plugin_names_the_package(global_host, monkeypatch):
    only(monkeypatch, "nothing")
    plugins.reset_host()
    with pytest.raises(PluginNotInstalledError) as err:
        from rechub_core.matching import DSSM  # noqa: F401
    message = str(err.value)
    assert "rechub-plugins-dssm" in message
    assert "pip install -e plugins/rechub_plugins_dssm" in message
    with pytest.raises(PluginNotInstalledError, match="rechub-plugins-seq"):
        from rechub_core.matching import SASRec  # noqa: F401
    assert isinstance(err.value, ImportError)


def test_list_plugins_json_matches_host(
    fake_site: FakeSite, global_host, monkeypatch, wide_console
):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    fake_site.add("fakeplug-broken", {"broken": "fakeplug_broken"}, {"fakeplug_broken": BROKEN})
    only(monkeypatch, "good", "broken")
    app = make_app()
    listed = CliRunner().invoke(app, ["list-plugins", "--json"])
    rows = json.loads(listed.stdout)  # notes on what RECHUB_PLUGINS left out go to stderr
    assert "RECHUB_PLUGINS=good,broken left out" in listed.stderr
    assert [(r["name"], r["status"]) for r in rows] == [("broken", "error"), ("good", "ok")]
    assert rows[1]["components"] == {"model": ["GoodModel"], "tower": ["Good-Tower", "good_mlp"]}
    table = CliRunner().invoke(app, ["list-plugins"]).output
    assert "boom: native library missing" in table
    assert "fakeplug-good" in table


def test_list_plugins_prints_error_text_verbatim(
    fake_site: FakeSite, global_host, monkeypatch, wide_console
):
    source = 'raise ImportError("install fakeplug-gpu[gpu] for this plugin")\n'
    fake_site.add("fakeplug-gpu", {"gpu": "fakeplug_gpu"}, {"fakeplug_gpu": source})
    only(monkeypatch, "gpu")
    result = CliRunner().invoke(make_app(), ["list-plugins"])
    assert result.exit_code == 0
    assert "fakeplug-gpu[gpu]" in result.output


def test_metric_table_fits_80_columns_with_its_title_on_one_line():
    from rich.console import Console

    from rechub_core.cli._common import METRIC_KEYS, _metrics_table

    assert len(METRIC_KEYS) == 15  # Recall/Precision/NDCG/Hit/MRR @10/20/50, as the README says
    console = Console(width=80, record=True, color_system=None)
    metrics = {k: 0.5 for k in METRIC_KEYS}
    title = "FaceBookDSSM on movielens-100k (test, full ranking; trained in 100s)"
    console.print(_metrics_table(title, {"FaceBookDSSM": metrics, "MostPop": metrics}, METRIC_KEYS))
    lines = console.export_text().splitlines()
    assert any(title in line for line in lines)  # not wrapped onto two lines
    assert max(len(line) for line in lines) <= 80
    for name in ("recall", "precision", "ndcg", "hit", "mrr"):
        assert any(line.startswith(f"│ {name} ") for line in lines), name


def test_cli_metric_names_are_the_metric_modules():
    from rechub_core import metrics
    from rechub_core.cli import _common

    assert _common.METRIC_NAMES == metrics.METRIC_NAMES  # copied there so --help needs no torch
    assert _common.METRIC_KS == metrics.DEFAULT_KS
