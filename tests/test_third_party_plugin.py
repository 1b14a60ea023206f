"""A third party's path, end to end and isolated: the tutorial's plugin (its files are taken
from docs/plugins.md), a deliberately broken plugin and a copy of the template are
pip-installed into a temporary folder (``pip install --target``; .venv is not touched), and
``rechub`` and ``pytest`` run as subprocesses with that folder on PYTHONPATH, where
``importlib.metadata`` finds their entry points:

* ``rechub list-plugins`` lists all three as "ok" (and ``RECHUB_TRACE_HOOKS=1`` traces them);
* ``rechub train --model MeanPool --data synthetic --epochs 1`` trains the tutorial's model;
* ``pytest -p rechub_core.testing`` runs the conformance kit: it passes on the tutorial's model
  and on the template's own tests, and fails on the broken plugin with a message naming the
  parameters its gradients never reach and what to do about them.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from plugin_sources import rechub_command, run

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "plugins.md"
TEMPLATE = REPO / "plugins" / "rechub-plugin-template"

BROKEN_MODULE = '''\
"""A deliberately broken plugin: its model owns a layer it never uses."""

from collections.abc import Iterator

from torch import nn

from rechub_core.hookspecs import hookimpl
from rechub_core.specs import ModelSpec, TrainSettings
from rechub_core.towers import ItemEmbeddingTower, MLPTower, TwoTowerModel


class Forgetful(TwoTowerModel):
    def __init__(self, user_features, item_features):
        user = MLPTower(user_features, dims=[16])
        super().__init__(user, ItemEmbeddingTower(item_features[0]), temperature=0.1)
        self.forgotten = nn.Linear(16, 16)  # the bug: encode_user/encode_item never call it

    @classmethod
    def from_schema(cls, schema, **params):
        return cls([schema.history(16)], [schema.item_id(16)])


@hookimpl
def rechub_register_models() -> Iterator[ModelSpec]:
    yield ModelSpec(
        name="Forgetful",
        factory=Forgetful,
        from_schema=Forgetful.from_schema,
        train_defaults=TrainSettings(mode=2, loss="softmax", sampler="full"),
    )
'''

BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "rechub-forgetful"
version = "0.0.1"
dependencies = ["rechub"]

[project.entry-points.rechub]
forgetful = "rechub_forgetful"

[tool.setuptools]
py-modules = ["rechub_forgetful"]
"""

KIT_TESTS = """\
def test_tutorial_model_conforms(rechub_conformance):
    assert rechub_conformance("MeanPool").ok


def test_broken_model_conforms(rechub_conformance):
    rechub_conformance("Forgetful")
"""

#: small synthetic data for `rechub train`, so that one epoch takes a second
TRAIN_CONFIG = """\
[model]
name = "MeanPool"

[data]
synthetic_users = 150
synthetic_items = 80
max_len = 10
"""


def can_build_wheels() -> bool:
    """``pip install --no-build-isolation`` builds with this environment's setuptools, which
    makes wheels on its own from 70.1 (torch requires a recent one), or with ``wheel``."""
    try:
        major, minor = (int(p) for p in md.version("setuptools").split(".")[:2])
    except (md.PackageNotFoundError, ValueError):
        return False
    if (major, minor) >= (70, 1):
        return True
    try:
        md.version("wheel")
    except md.PackageNotFoundError:
        return False
    return True


def tutorial_files() -> dict[str, str]:
    """The files the tutorial writes: ``<!-- file: NAME -->`` followed by a fenced block."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, flags=re.DOTALL)
    return dict(found)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Three plugins pip-installed into ``TMP/site``; the environment that finds them."""
    if not can_build_wheels():
        pytest.skip("needs setuptools >= 70.1 (or wheel) to pip-install without build isolation")
    root = tmp_path_factory.mktemp("third_party")
    files = tutorial_files()
    assert set(files) == {"rechub_meanpool.py", "pyproject.toml"}, sorted(files)
    assert 35 <= files["rechub_meanpool.py"].count("\n") <= 80  # one small module
    for folder, contents in {
        "rechub-meanpool": files,
        "rechub-forgetful": {
            "rechub_forgetful.py": BROKEN_MODULE,
            "pyproject.toml": BROKEN_PYPROJECT,
        },
    }.items():
        (root / folder).mkdir()
        for name, text in contents.items():
            (root / folder / name).write_text(text, encoding="utf-8")
    # the template is copied first, as its README says: building in place would litter the repo
    shutil.copytree(
        TEMPLATE,
        root / "template",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build", ".pytest_cache"),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RECHUB_"))}
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    pip += ["--no-build-isolation", "--no-cache-dir", "--target", str(root / "site")]
    done = run(
        [*pip, *(str(root / d) for d in ("rechub-meanpool", "rechub-forgetful", "template"))],
        env,
        root,
    )
    assert done.returncode == 0, done.stderr
    path = os.pathsep.join(p for p in (str(root / "site"), env.get("PYTHONPATH", "")) if p)
    env.update(PYTHONPATH=path, OMP_NUM_THREADS="1", COLUMNS="200")
    return root, env


def test_list_plugins_lists_them_and_tracing_shows_their_hooks(installed):
    root, env = installed
    result = run(
        [*rechub_command(), "list-plugins", "--json"], {**env, "RECHUB_TRACE_HOOKS": "1"}, root
    )
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {"meanpool", "forgetful", "template", "dssm", "seq", "multiinterest"} <= set(rows)
    assert all(r["status"] == "ok" for r in rows.values()), rows
    meanpool = rows["meanpool"]
    assert (meanpool["distribution"], meanpool["version"]) == ("rechub-meanpool", "0.1.0")
    assert meanpool["components"] == {"encoder": ["meanpool"], "model": ["MeanPool"]}
    assert rows["template"]["components"] == {
        "encoder": ["attention_pool"],
        "model": ["AttentionPool"],
    }
    # the trace goes to stderr, so --json output stays parseable
    assert "rechub trace: loading entry point meanpool = rechub_meanpool" in result.stderr
    assert "rechub trace:   rechub_register_models [hook]" in result.stderr  # pluggy's trace
    assert "rechub trace: rechub_register_models from meanpool: 1 records" in result.stderr


def test_train_the_tutorial_model(installed):
    root, env = installed
    (root / "small.toml").write_text(TRAIN_CONFIG, encoding="utf-8")
    out = root / "run"
    train = [*rechub_command(), "train", "small.toml", "--model", "MeanPool", "--data"]
    train += ["synthetic", "--epochs", "1", "--out", str(out), "--quiet"]
    result = run(train, env, root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MeanPool on synthetic" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "MeanPool"
    assert len(metrics["history"]) == 1
    # `rechub export RUN` is the core's (tests/test_runs_cli.py); the kit's onnx check below
    # exports this model's towers and checks their parity


def test_conformance_kit_passes_good_plugins_and_names_the_fix_for_the_broken_one(installed):
    root, env = installed
    (root / "test_kit.py").write_text(KIT_TESTS, encoding="utf-8")
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    pytest_args = [sys.executable, "-m", "pytest", "-p", "rechub_core.testing", "-p"]
    pytest_args += ["no:cacheprovider", "-c", "pytest.ini", "-q", "-rf"]
    result = run([*pytest_args, "test_kit.py", "template/tests"], env, root)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # exactly the broken plugin fails
    assert re.search(r"\b1 failed, 5 passed\b", output), output
    assert "FAILED test_kit.py::test_broken_model_conforms" in output
    assert (
        "Forgetful: check 'gradients' failed: gradients did not reach parameters "
        "['forgotten.weight', 'forgotten.bias']"
    ) in output
    assert "Fix: make sure every parameter is used in encode_user/encode_item" in output
    assert "Forgetful: 7 passed, 1 failed, 1 skipped" in output  # only what is broken fails
