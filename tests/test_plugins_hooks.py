"""The per-hook contract (each hook registered in-process, llm style) and the meta-tests: every
hook documented in docs/plugins.md with its signature, and tested."""

from __future__ import annotations

import ast
import functools
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import typer
from typer.testing import CliRunner

from rechub_core import hookspecs, plugins
from rechub_core.cli import make_app
from rechub_core.hookspecs import hookimpl
from rechub_core.plugins import PluginHost
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

from plugin_sources import by_name, only

pytest_plugins = ["plugin_fixtures"]  # fixtures: fake_site, global_host, wide_console


TESTS = Path(__file__).parent


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
