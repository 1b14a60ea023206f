"""Messages a plugin author or a user meets, each naming the problem and the fix: a misspelt
hook, ``create`` with wrong parameters, plugins kept out by the environment, an unknown user in
``rechub recall``; and the lazy ``"module:attr"`` registrations behind a fast CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from rechub_core import plugins
from rechub_core.cli import make_app
from rechub_core.errors import LazyImportError, RechubError
from rechub_core.hookspecs import hookimpl
from rechub_core.plugins import PluginHost
from rechub_core.specs import LossSpec, ModelSpec

if TYPE_CHECKING:  # imported by pytest_plugins, so that pytest rewrites its asserts
    from plugin_fixtures import FakeSite

from plugin_sources import GOOD, only

pytest_plugins = ["plugin_fixtures"]  # fixtures: fake_site, global_host, wide_console, host

TYPO = """\
@hookimpl
def rechub_register_model():
    yield ModelSpec(name="Typo", factory=dict)
"""


# --- a misspelt hook --------------------------------------------------------------------------


def test_typo_hook_suggests_the_real_hook_and_does_not_list_itself(
    fake_site: FakeSite, monkeypatch
):
    fake_site.add("fakeplug-typo", {"typo": "fakeplug_typo"}, {"fakeplug_typo": TYPO})
    only(monkeypatch, "typo")
    error = {i.name: i for i in PluginHost().plugins()}["typo"].error or ""
    assert "did you mean rechub_register_models?" in error
    known = error.split("known hooks:", 1)[1]
    assert "rechub_register_models" in known
    assert "rechub_register_model," not in known + ","  # the typo is not a known hook
    assert "rechub_register_model " not in known + " "


# --- create(kind, name, **params) --------------------------------------------------------------


class TwoFeatures:
    def __init__(self, user_features: list, item_features: list, temperature: float = 1.0):
        self.args = (user_features, item_features, temperature)


@pytest.fixture
def model_host(host: PluginHost) -> PluginHost:
    class Plugin:
        @hookimpl
        def rechub_register_models(self):
            yield ModelSpec(name="TwoFeatures", factory=TwoFeatures)

    host.register(Plugin(), name="two-features")
    return host


def test_create_with_a_wrong_keyword_lists_the_accepted_ones(model_host):
    with pytest.raises(RechubError) as info:
        model_host.create("model", "TwoFeatures", features=[1], item_features=[2])
    text = str(info.value)
    assert "unknown keyword(s) 'features'" in text
    assert "accepted keywords: user_features, item_features, temperature" in text
    assert "missing required keyword(s) user_features" in text


def test_create_with_a_misspelt_keyword_suggests_the_right_one(host):
    with pytest.raises(RechubError, match=r"'logq' \(did you mean 'logq_correction'\?\)"):
        host.create("loss", "sampled_softmax", logq=True)


def test_create_with_positional_features_says_to_pass_keywords(model_host):
    with pytest.raises(RechubError) as info:
        model_host.create("model", "TwoFeatures", [1], [2])
    text = str(info.value)
    assert "2 positional parameter(s)" in text
    assert "create('model', 'TwoFeatures', user_features=...)" in text
    assert "required: user_features, item_features" in text


def test_create_passes_good_keywords_through(model_host):
    built = model_host.create("model", "TwoFeatures", user_features=[1], item_features=[2])
    assert built.args == ([1], [2], 1.0)


def test_create_of_a_torch_module_without_init_parameters(host):
    with pytest.raises(RechubError, match=r"cannot create loss 'bpr'.*it takes no parameters"):
        host.create("loss", "bpr", margin=1.0)


# --- plugins kept out by the environment -------------------------------------------------------


def test_unknown_name_in_rechub_plugins_names_the_fix(fake_site: FakeSite, monkeypatch):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    only(monkeypatch, "nosuch")
    notes = PluginHost().load_notes()
    assert any(
        "RECHUB_PLUGINS=nosuch names no installed plugin: nosuch" in n
        and "fakeplug-good" in n
        and "unset RECHUB_PLUGINS" in n
        for n in notes
    ), notes
    assert any("left out" in n and "good" in n for n in notes), notes


def test_list_plugins_says_what_the_environment_kept_out(
    fake_site: FakeSite, global_host, monkeypatch, wide_console
):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    only(monkeypatch, "nosuch")
    out = CliRunner().invoke(make_app(), ["list-plugins"]).output
    assert "No plugins installed." not in out
    assert "No plugins loaded." in out
    assert "RECHUB_PLUGINS=nosuch names no installed plugin" in out
    monkeypatch.delenv(plugins.ENV_PLUGINS)
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reset_host()
    out = CliRunner().invoke(make_app(), ["list-plugins"]).output
    assert "RECHUB_DISABLE_PLUGIN_AUTOLOAD is set" in out and "unset it" in out
    assert "good" in out


def test_nothing_kept_out_means_no_notes(fake_site: FakeSite, monkeypatch):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    host = PluginHost()
    host.load()
    assert [n for n in host.load_notes() if "fakeplug" in n or "good" in n] == []


# --- lazy registrations ---------------------------------------------------------------------------


def test_lazy_factory_is_imported_on_first_use():
    spec = LossSpec(name="lazy_bce", factory="rechub_core.losses:BCELoss")
    assert spec.target == "rechub_core.losses:BCELoss"
    from rechub_core.losses import BCELoss

    assert spec.factory is BCELoss


def test_lazy_from_schema_resolves_a_dotted_attribute():
    spec = ModelSpec(
        name="LazyDSSM",
        factory="rechub_plugins_dssm.dssm:DSSM",
        from_schema="rechub_plugins_dssm.dssm:DSSM.from_schema",
    )
    from rechub_plugins_dssm.dssm import DSSM

    assert spec.from_schema == DSSM.from_schema


def test_from_schema_defaults_to_the_model_class_own():
    """Like modes, from_schema is declared once, on the class; a factory without one has none."""
    from rechub_plugins_dssm.dssm import DSSM

    assert ModelSpec(name="D", factory="rechub_plugins_dssm.dssm:DSSM").from_schema == (
        DSSM.from_schema
    )
    assert ModelSpec(name="F", factory=dict).from_schema is None


def test_lazy_target_that_does_not_import_names_it_and_the_fix():
    spec = LossSpec(name="gone", factory="no_such_plugin.losses:Gone")
    with pytest.raises(LazyImportError) as info:
        _ = spec.factory
    text = str(info.value)
    assert "'no_such_plugin.losses:Gone'" in text and "reinstall the plugin" in text


def test_malformed_lazy_target_is_refused_when_registered():
    with pytest.raises(ValueError, match=r"package\.module:Name"):
        LossSpec(name="bad", factory="no colon here")


def test_model_modes_are_read_from_each_model_class(global_host):
    for name in plugins.list_components("model"):
        spec = plugins.get_spec("model", name)
        declared = getattr(spec.factory, "supported_modes", None)
        if declared is not None:
            assert tuple(spec.modes) == tuple(declared), name
