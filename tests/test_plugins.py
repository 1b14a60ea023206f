"""The plugin host: entry-point discovery against fake distributions, the registry's errors,
environment switches, the per-hook contract and the seed-compatible ``rechub_core.matching``."""

from __future__ import annotations

import ast
import functools
import inspect
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import typer
from typer.testing import CliRunner

from rechub_core import hookspecs, plugins
from rechub_core.cli import make_app
from rechub_core.errors import (
    DuplicateComponentError,
    PluginNotInstalledError,
    RechubError,
    UnknownComponentError,
)
from rechub_core.hookspecs import hookimpl
from rechub_core.plugins import PluginHost, PluginInfo
from rechub_core.specs import (
    KINDS,
    EncoderSpec,
    IndexSpec,
    LossSpec,
    ModelSpec,
    SamplerSpec,
    TowerSpec,
)

if TYPE_CHECKING:  # imported by pytest_plugins, so that pytest rewrites its asserts
    from plugin_fixtures import FakeSite

pytest_plugins = ["plugin_fixtures"]  # fixtures: fake_site, global_host, wide_console

TESTS = Path(__file__).parent

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


@pytest.fixture
def host(monkeypatch) -> PluginHost:
    """A host with the built-ins only (no entry points: fast and isolated)."""
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    monkeypatch.delenv(plugins.ENV_PLUGINS, raising=False)
    host = PluginHost()
    host.load()  # built-ins first, as in real use
    return host


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
    assert any("rechub_register_models" in m for m in traced)


# --- in-process registration (llm style) -------------------------------------------------------


def register_and_check(host: PluginHost, plugin: object, kind: str, name: str) -> Any:
    """Register ``plugin``, return ``create(kind, name)``, unregister and check it is gone."""
    assert host.register(plugin, name="in-test")
    try:
        built = host.create(kind, name.upper())
        assert name in host.list_components(kind)
        info = by_name(host.plugins())["in-test"]
        assert info.status == "ok"
        assert info.components == {kind: (name,)}
    finally:
        host.unregister("in-test")
    assert name not in host.list_components(kind)
    assert "in-test" not in by_name(host.plugins())
    return built


def test_hook_rechub_register_towers(host):
    class Plugin:
        @hookimpl
        def rechub_register_towers(self):
            yield TowerSpec(name="fake_tower", factory=lambda dim=4: ("tower", dim))

    assert register_and_check(host, Plugin(), "tower", "fake_tower") == ("tower", 4)
    assert "mlp" in host.list_components("tower")


def test_hook_rechub_register_encoders(host):
    class Plugin:
        @hookimpl
        def rechub_register_encoders(self):
            yield EncoderSpec(name="multi_enc", factory=dict, multi_interest=True)

    host.register(Plugin(), name="enc")
    try:
        spec = host.get_spec("encoder", "Multi_Enc")
        assert isinstance(spec, EncoderSpec)
        assert spec.multi_interest is True
    finally:
        host.unregister("enc")
    assert register_and_check(host, Plugin(), "encoder", "multi_enc") == {}


def test_hook_rechub_register_losses(host):
    class Plugin:
        @hookimpl
        def rechub_register_losses(self):
            yield LossSpec(name="fake_loss", factory=lambda margin=1.0: margin)

    assert register_and_check(host, Plugin(), "loss", "fake_loss") == 1.0
    loss = host.create("loss", "BPR")
    assert type(loss).__name__ == "BPRLoss"


def test_hook_rechub_register_samplers(host):
    class Plugin:
        @hookimpl
        def rechub_register_samplers(self):
            yield SamplerSpec(name="fake_sampler", factory=list)

    assert register_and_check(host, Plugin(), "sampler", "fake_sampler") == []
    assert {"uniform", "in_batch", "hard"} <= set(host.list_components("sampler"))


def test_hook_rechub_register_indexes(host):
    class Plugin:
        @hookimpl
        def rechub_register_indexes(self):
            yield IndexSpec(name="fake_index", factory=set)

    assert register_and_check(host, Plugin(), "index", "fake_index") == set()
    assert {"exact", "faiss"} <= set(host.list_components("index"))


def test_hook_rechub_register_models(host):
    class Plugin:
        @hookimpl
        def rechub_register_models(self):
            yield ModelSpec(name="fake_model", factory=dict, family="fake", modes=(2,))

    assert register_and_check(host, Plugin(), "model", "fake_model") == {}
    host.register(Plugin(), name="again")
    try:
        spec = host.get_spec("model", "FAKE_MODEL")
        assert (spec.family, spec.modes, spec.train_defaults.mode) == ("fake", (2,), 2)
    finally:
        host.unregister("again")


def test_hook_rechub_register_commands(fake_site: FakeSite, global_host, monkeypatch):
    source = """\
    import typer

    @hookimpl
    def rechub_register_commands(app):
        @app.command("hello")
        def hello(name: str = "world"):
            \"\"\"Say hello.\"\"\"
            typer.echo(f"hello {name} from a plugin")
    """
    failing = """\
    @hookimpl
    def rechub_register_commands(app):
        raise RuntimeError("cannot add my command")
    """
    fake_site.add("fake-cmd", {"cmd": "fakeplug_cmd"}, {"fakeplug_cmd": source})
    fake_site.add("fake-fail", {"failcmd": "fakeplug_failcmd"}, {"fakeplug_failcmd": failing})
    only(monkeypatch, "cmd", "failcmd")
    app = make_app()  # a plugin failing to add commands does not break the app
    runner = CliRunner()
    result = runner.invoke(app, ["hello", "--name", "rechub"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello rechub from a plugin\n"
    assert "hello" in runner.invoke(app, ["--help"]).output

    # the hook receives a typer.Typer (never a click object)
    received: list[object] = []

    class Plugin:
        @hookimpl
        def rechub_register_commands(self, app):
            received.append(app)

    plugins.get_host().register(Plugin(), name="probe")
    try:
        app = make_app()
    finally:
        plugins.get_host().unregister("probe")
    assert received == [app]
    assert isinstance(received[0], typer.Typer)


# --- meta-tests: every hook documented and tested -------------------------------------------------


def hook_specs() -> dict[str, Any]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, marker)
    }


def test_hookspecs_are_found():
    specs = hook_specs()
    assert len(specs) == 7
    assert set(hookspecs.COMPONENT_HOOKS) == set(specs) - {"rechub_register_commands"}
    assert sorted(hookspecs.COMPONENT_HOOKS.values()) == sorted(KINDS)


@pytest.mark.parametrize("hook", sorted(hook_specs()))
def test_every_hookspec_is_documented(hook):
    doc = inspect.getdoc(hook_specs()[hook])
    assert doc and len(doc.split()) >= 4, f"hook {hook} needs a docstring"


@functools.cache
def functions_defined_in_tests() -> frozenset[str]:
    """Names of the functions defined in the test files (found by scanning their source)."""
    defined: set[str] = set()
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    return frozenset(defined)


@pytest.mark.parametrize("hook", sorted(hook_specs()))
def test_every_hookspec_has_a_test(hook):
    assert f"test_hook_{hook}" in functions_defined_in_tests(), f"add test_hook_{hook}"


DOCS = TESTS.parent / "docs" / "plugins.md"


def documented_hooks() -> dict[str, list[ast.FunctionDef]]:
    """Hook signatures written in the "Hook reference" section of docs/plugins.md, by name."""
    text = DOCS.read_text(encoding="utf-8")
    assert "## Hook reference" in text, f"{DOCS} lost its hook reference section"
    section = text.split("## Hook reference", 1)[1].split("\n## ", 1)[0]
    found: dict[str, list[ast.FunctionDef]] = {}
    for line in section.splitlines():
        if line.startswith("def rechub_"):
            (node,) = ast.parse(f"{line.rstrip(':')}: ...").body
            assert isinstance(node, ast.FunctionDef)
            found.setdefault(node.name, []).append(node)
    return found


def spec_signature(fn: Any) -> tuple[list[tuple[str, str]], str]:
    """``[(argument, annotation)], return annotation`` of a hookspec (annotations are strings:
    hookspecs.py uses ``from __future__ import annotations``)."""
    sig = inspect.signature(fn)
    params = [(p.name, str(p.annotation)) for p in sig.parameters.values()]
    return params, str(sig.return_annotation)


def doc_signature(node: ast.FunctionDef) -> tuple[list[tuple[str, str]], str]:
    params = [(a.arg, ast.unparse(a.annotation) if a.annotation else "") for a in node.args.args]
    return params, ast.unparse(node.returns) if node.returns else ""


@pytest.mark.parametrize("hook", sorted(hook_specs()))
def test_every_hookspec_is_in_the_docs_with_its_signature(hook):
    documented = documented_hooks()
    assert hook in documented, f"document {hook} in the hook reference of {DOCS}"
    assert len(documented[hook]) == 1, f"{hook} is documented more than once in {DOCS}"
    expected = spec_signature(hook_specs()[hook])
    assert doc_signature(documented[hook][0]) == expected, (
        f"{DOCS} documents {ast.unparse(documented[hook][0]).splitlines()[0]!r} but "
        f"hookspecs.py has "
        f"{hook}{inspect.signature(hook_specs()[hook])}"
    )


def test_docs_document_no_hook_that_does_not_exist():
    assert set(documented_hooks()) <= set(hook_specs()), f"stale hooks in {DOCS}"


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
    rows = json.loads(CliRunner().invoke(app, ["list-plugins", "--json"]).output)
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
