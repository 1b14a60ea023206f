"""The plugin host loading entry points of fake distributions: good, broken and clashing
plugins, typos in hooks, and the environment switches (RECHUB_PLUGINS, ...)."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import pytest

from rechub_core import plugins
from rechub_core.errors import (
    DuplicateComponentError,
    RechubError,
    UnknownComponentError,
)
from rechub_core.hookspecs import hookimpl
from rechub_core.plugins import PluginHost
from rechub_core.specs import (
    LossSpec,
    ModelSpec,
)

if TYPE_CHECKING:  # imported by pytest_plugins, so that pytest rewrites its asserts
    from plugin_fixtures import FakeSite

from plugin_sources import BROKEN, GOOD, by_name, clashing, only

pytest_plugins = ["plugin_fixtures"]  # fixtures: fake_site, global_host, wide_console


# --- discovery of good and broken plugins -------------------------------------------------------


def test_good_plugin_components_are_created_and_listed(fake_site: FakeSite, monkeypatch):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD}, "2.5")
    only(monkeypatch, "good")
    host = PluginHost()

    model = host.create("model", "goodmodel", dim=16)  # case-insensitive
    assert type(model).__name__ == "Built"
    assert model.params == {"dim": 16}
    assert host.create("tower", "GOOD_TOWER").params == {}  # '-' and '_' are one
    assert host.get_spec("model", "GoodModel").family == "fake"

    assert host.list_components("model") == ["GoodModel"]
    assert host.list_components("tower", "good*") == ["Good-Tower", "good_mlp"]
    assert host.list_components("tower", "*MLP") == ["good_mlp", "mlp"]  # + the built-in
    assert "bce" in host.list_components("loss")  # built-ins are there too

    info = by_name(host.plugins())["good"]
    assert (info.distribution, info.version, info.status, info.error) == (
        "fakeplug-good",
        "2.5",
        "ok",
        None,
    )
    assert info.components == {"model": ("GoodModel",), "tower": ("Good-Tower", "good_mlp")}
    assert info.hooks == ("rechub_register_models", "rechub_register_towers")


def test_unknown_name_lists_available(fake_site: FakeSite, monkeypatch):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    only(monkeypatch, "good")
    host = PluginHost()
    with pytest.raises(UnknownComponentError) as err:
        host.create("model", "NoSuchModel")
    message = str(err.value)
    assert "'NoSuchModel'" in message
    assert "GoodModel" in message
    with pytest.raises(UnknownComponentError, match="bce, bpr, hinge"):
        host.get_spec("loss", "focal")
    with pytest.raises(UnknownComponentError, match="kinds are: tower, encoder"):
        host.list_components("widget")


def test_bad_params_give_a_rechub_error(fake_site: FakeSite, monkeypatch):
    only(monkeypatch, "none")
    host = PluginHost()
    with pytest.raises(RechubError, match=r"cannot create loss 'bpr'.*no_such_param"):
        host.create("loss", "bpr", no_such_param=1)


def test_plugin_that_fails_to_import_is_reported(fake_site: FakeSite, monkeypatch):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    fake_site.add("fakeplug-broken", {"broken": "fakeplug_broken"}, {"fakeplug_broken": BROKEN})
    only(monkeypatch, "good", "broken")
    host = PluginHost()

    infos = by_name(host.plugins())
    assert set(infos) == {"good", "broken"}
    broken = infos["broken"]
    assert broken.status == "error"
    assert broken.distribution == "fakeplug-broken"
    assert broken.error is not None
    assert "import failed" in broken.error
    assert "RuntimeError: boom: native library missing" in broken.error
    assert infos["good"].status == "ok"
    assert host.create("model", "GoodModel").params == {}


def test_clash_names_both_distributions(fake_site: FakeSite, monkeypatch):
    fake_site.add("fake-alpha", {"alpha": "fakeplug_alpha"}, {"fakeplug_alpha": clashing("A1")})
    fake_site.add("fake-beta", {"beta": "fakeplug_beta"}, {"fakeplug_beta": clashing("B1")})
    only(monkeypatch, "alpha", "beta")
    host = PluginHost()

    with pytest.raises(DuplicateComponentError) as err:
        host.create("model", "twintower")
    assert "fake-alpha" in str(err.value)
    assert "fake-beta" in str(err.value)
    assert plugins.ENV_PLUGINS in str(err.value)  # says how to resolve it

    assert host.create("model", "A1") == {}
    assert host.create("model", "B1") == {}
    assert host.list_components("model") == ["A1", "B1", "TwinTower"]

    infos = by_name(host.plugins())
    flagged = {n: i.error for n, i in infos.items() if i.status == "error"}
    assert len(flagged) == 1, infos  # list-plugins shows the clash on one of them ...
    ((name, error),) = flagged.items()
    other = "fake-alpha" if name == "beta" else "fake-beta"
    assert f"model 'TwinTower' is also registered by {other}" in (error or "")  # ... naming both


def test_clash_with_a_builtin_shows_on_the_plugin(host):
    class Plugin:
        @hookimpl
        def rechub_register_losses(self):
            yield LossSpec(name="bce", factory=dict)

    host.register(Plugin(), name="copy-bce", distribution="fake-bce")
    with pytest.raises(DuplicateComponentError, match="fake-bce and rechub"):
        host.get_spec("loss", "BCE")
    info = by_name(host.plugins())["copy-bce"]
    assert info.status == "error"
    assert "loss 'bce' is also registered by rechub" in (info.error or "")


def test_clash_with_an_installed_plugin(fake_site: FakeSite, monkeypatch):
    copycat = """\
    @hookimpl
    def rechub_register_models():
        yield ModelSpec(name="dssm", factory=dict)
    """
    fake_site.add("fake-copycat", {"copycat": "fakeplug_copycat"}, {"fakeplug_copycat": copycat})
    only(monkeypatch, "dssm", "copycat")
    host = PluginHost()
    with pytest.raises(DuplicateComponentError, match="fake-copycat and rechub-plugins-dssm"):
        host.get_spec("model", "DSSM")
    assert host.get_spec("model", "YoutubeDNN").family == "dssm"


def test_typo_hook_and_wrong_signature_are_reported(fake_site: FakeSite, monkeypatch):
    typo = """\
    @hookimpl
    def rechub_register_modles():
        yield ModelSpec(name="Typo", factory=dict)

    @hookimpl
    def rechub_register_losses():
        yield LossSpec(name="typo_loss", factory=dict)
    """
    wrong = """\
    @hookimpl
    def rechub_register_models(schema):
        yield ModelSpec(name="Wrong", factory=dict)
    """
    fake_site.add("fake-typo", {"typo": "fakeplug_typo"}, {"fakeplug_typo": typo})
    fake_site.add("fake-wrong", {"wrong": "fakeplug_wrong"}, {"fakeplug_wrong": wrong})
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    only(monkeypatch, "typo", "wrong", "good")
    host = PluginHost()

    infos = by_name(host.plugins())
    assert infos["typo"].status == "error"
    assert "unknown hook(s) rechub_register_modles" in (infos["typo"].error or "")
    assert "rechub_register_models" in (infos["typo"].error or "")  # suggests the real names
    assert infos["typo"].distribution == "fake-typo"
    assert infos["wrong"].status == "error"
    assert "invalid hook implementation" in (infos["wrong"].error or "")
    assert "schema" in (infos["wrong"].error or "")
    assert infos["good"].status == "ok"
    # a rejected plugin registers nothing, not even its valid hooks
    assert host.list_components("model") == ["GoodModel"]
    assert "typo_loss" not in host.list_components("loss")
    assert not host.pm.has_plugin("typo")
    assert not host.pm.has_plugin("wrong")


def test_records_of_the_wrong_type_are_reported(fake_site: FakeSite, monkeypatch):
    source = """\
    @hookimpl
    def rechub_register_models():
        yield TowerSpec(name="NotAModel", factory=dict)

    @hookimpl
    def rechub_register_losses():
        return [{"name": "dict_loss"}]

    @hookimpl
    def rechub_register_samplers():
        yield SamplerSpec(name="fine_sampler", factory=dict)
    """
    fake_site.add("fake-types", {"types": "fakeplug_types"}, {"fakeplug_types": source})
    only(monkeypatch, "types")
    host = PluginHost()
    info = by_name(host.plugins())["types"]
    assert info.status == "error"
    error = info.error or ""
    assert "rechub_register_models must yield ModelSpec records, got TowerSpec" in error
    assert "rechub_register_losses must yield LossSpec records, got dict" in error
    assert "NotAModel" not in host.list_components("model")
    assert "NotAModel" not in host.list_components("tower")
    assert host.create("sampler", "fine_sampler") == {}  # its good hook still counts


def test_hook_that_raises_is_reported(fake_site: FakeSite, monkeypatch):
    source = """\
    @hookimpl
    def rechub_register_models():
        yield ModelSpec(name="First", factory=dict)
        raise KeyError("half way")
    """
    fake_site.add("fake-raise", {"raise": "fakeplug_raise"}, {"fakeplug_raise": source})
    only(monkeypatch, "raise")
    host = PluginHost()
    info = by_name(host.plugins())["raise"]
    assert info.status == "error"
    assert "rechub_register_models failed: KeyError: 'half way'" in (info.error or "")
    assert host.list_components("model") == []  # nothing half-registered


def test_hook_without_hookimpl_is_reported(fake_site: FakeSite, monkeypatch):
    source = """\
    @hookimpl
    def rechub_register_losses():
        yield LossSpec(name="marked_loss", factory=dict)

    def rechub_register_models():
        yield ModelSpec(name="Unmarked", factory=dict)
    """
    fake_site.add("fake-unmarked", {"unmarked": "fakeplug_unmarked"}, {"fakeplug_unmarked": source})
    only(monkeypatch, "unmarked")
    host = PluginHost()
    info = by_name(host.plugins())["unmarked"]
    assert info.status == "error"
    assert "rechub_register_models not marked with @hookimpl" in (info.error or "")
    assert "from rechub_core.hookspecs import hookimpl" in (info.error or "")
    assert info.hooks == ("rechub_register_losses",)
    assert "marked_loss" in host.list_components("loss")  # its marked hook still counts
    assert host.list_components("model") == []
    host.unregister("unmarked")
    assert "unmarked" not in by_name(host.plugins())


def test_hook_returning_one_record_says_to_yield(host):
    class Plugin:
        @hookimpl
        def rechub_register_models(self):
            return ModelSpec(name="Single", factory=dict)

    host.register(Plugin(), name="single")
    try:
        info = by_name(host.plugins())["single"]
    finally:
        host.unregister("single")
    assert info.status == "error"
    assert "rechub_register_models returned one ModelSpec; yield each record" in (info.error or "")


def test_entry_point_name_used_by_two_distributions_is_reported(fake_site: FakeSite, monkeypatch):
    def one_model(name: str) -> str:
        return f"""\
    @hookimpl
    def rechub_register_models():
        yield ModelSpec(name="{name}", factory=dict)
    """

    fake_site.add("fake-first", {"shared": "fakeplug_first"}, {"fakeplug_first": one_model("M1")})
    fake_site.add(
        "fake-second", {"shared": "fakeplug_second"}, {"fakeplug_second": one_model("M2")}
    )
    only(monkeypatch, "shared")
    host = PluginHost()
    infos = host.plugins()
    assert [i.name for i in infos] == ["shared", "shared"]  # both listed, neither silently lost
    loaded, skipped = sorted(infos, key=lambda i: i.status != "ok")
    assert (loaded.status, skipped.status) == ("ok", "error")
    assert {loaded.distribution, skipped.distribution} == {"fake-first", "fake-second"}
    error = skipped.error or ""
    assert f"the entry point name 'shared' is already used by {loaded.distribution}" in error
    assert f"give {skipped.distribution}'s entry point another name" in error
    assert host.list_components("model") == (
        ["M1"] if loaded.distribution == "fake-first" else ["M2"]
    )


# --- environment switches ------------------------------------------------------------------------


def test_rechub_plugins_limits_loading(fake_site: FakeSite, monkeypatch):
    fake_site.add("fake-alpha", {"alpha": "fakeplug_alpha"}, {"fakeplug_alpha": clashing("A1")})
    fake_site.add("fake-beta", {"beta": "fakeplug_beta"}, {"fakeplug_beta": clashing("B1")})

    monkeypatch.setenv(plugins.ENV_PLUGINS, " beta ")  # by entry-point name
    assert [i.name for i in PluginHost().plugins()] == ["beta"]
    monkeypatch.setenv(plugins.ENV_PLUGINS, "fake-alpha")  # by distribution name
    host = PluginHost()
    assert [i.name for i in host.plugins()] == ["alpha"]
    assert host.create("model", "TwinTower") == {}  # no clash when only one loads
    monkeypatch.setenv(plugins.ENV_PLUGINS, "")
    assert PluginHost().plugins() == []

    monkeypatch.delenv(plugins.ENV_PLUGINS)
    names = {i.name for i in PluginHost().plugins()}
    assert {"alpha", "beta", "dssm"} <= names


def test_disable_autoload_keeps_only_builtins(fake_site: FakeSite, monkeypatch):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    host = PluginHost()
    assert host.plugins() == []
    infos = host.plugins(include_builtins=True)
    assert [(i.name, i.distribution, i.builtin) for i in infos] == [
        (plugins.BUILTIN_PLUGIN_NAME, "rechub", True)
    ]
    assert host.list_components("model") == []
    assert host.list_components("loss") == ["bce", "bpr", "hinge", "sampled_softmax", "softmax"]
    assert "fakeplug_good" not in sys.modules

    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "0")  # "0" means not disabled
    only(monkeypatch, "good")
    assert [i.name for i in PluginHost().plugins()] == ["good"]


def test_load_is_idempotent(fake_site: FakeSite, monkeypatch):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    only(monkeypatch, "good")
    host = PluginHost()
    host.load()
    host.load()
    assert [i.name for i in host.plugins()] == ["good"]
    assert host.list_components("model") == ["GoodModel"]


def test_trace_hooks_logs_hook_calls(fake_site: FakeSite, monkeypatch, caplog):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    only(monkeypatch, "good")
    monkeypatch.setenv(plugins.ENV_TRACE, "1")
    with caplog.at_level(logging.DEBUG, logger="rechub.hooks"):
        PluginHost().list_components("model")
    traced = [r.getMessage() for r in caplog.records if r.name == "rechub.hooks"]
    assert "loading entry point good = fakeplug_good (fakeplug-good 1.0) [rechub]" in traced
    # pluggy's own trace of the call (indented one level) and its result, then rechub's count
    assert "  rechub_register_models [hook]" in traced
    assert any(m.startswith("  finish rechub_register_models --> [") for m in traced)
    assert "rechub_register_models from good: 1 records [rechub]" in traced
    assert "rechub_register_towers from good: 2 records [rechub]" in traced


def test_no_trace_without_the_variable(fake_site: FakeSite, monkeypatch, caplog):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    only(monkeypatch, "good")
    monkeypatch.delenv(plugins.ENV_TRACE, raising=False)
    with caplog.at_level(logging.DEBUG, logger="rechub.hooks"):
        PluginHost().list_components("model")
    assert [r for r in caplog.records if r.name == "rechub.hooks"] == []


def test_hooks_are_called_through_pluggy_one_plugin_at_a_time(fake_site: FakeSite, monkeypatch):
    fake_site.add("fakeplug-good", {"good": "fakeplug_good"}, {"fakeplug_good": GOOD})
    second = clashing("OtherModel").replace("TwinTower", "SecondModel")
    fake_site.add("fake-second", {"second": "fakeplug_second"}, {"fakeplug_second": second})
    only(monkeypatch, "good", "second")
    host = PluginHost()
    host.load()
    calls: list[tuple[str, list[str]]] = []
    host.pm.add_hookcall_monitoring(
        lambda hook, impls, kwargs: calls.append((hook, [i.plugin_name for i in impls])),
        lambda *args: None,
    )
    assert host.list_components("model") == ["GoodModel", "OtherModel", "SecondModel"]
    # each plugin's hook goes through pluggy's hook-call machinery with only its own impl
    assert ("rechub_register_models", ["good"]) in calls
    assert ("rechub_register_models", ["second"]) in calls
    assert all(len(impls) == 1 for _, impls in calls), calls


def test_unknown_hook_marked_optional_is_accepted(fake_site: FakeSite, monkeypatch):
    source = """\
    @hookimpl(optionalhook=True)
    def rechub_register_widgets():
        return []

    @hookimpl
    def rechub_register_losses():
        yield LossSpec(name="optional_loss", factory=dict)
    """
    fake_site.add("fake-opt", {"opt": "fakeplug_opt"}, {"fakeplug_opt": source})
    only(monkeypatch, "opt")
    host = PluginHost()
    info = by_name(host.plugins())["opt"]
    assert (info.status, info.error) == ("ok", None)  # pluggy's check_pending allows it
    assert "optional_loss" in host.list_components("loss")
