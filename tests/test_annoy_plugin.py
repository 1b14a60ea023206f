"""The Annoy index plugin end to end, pip-installed into an isolated folder (``pip install
--target``; .venv is not touched), ``rechub`` run as a subprocess with that folder first on
PYTHONPATH, where ``importlib.metadata`` finds the plugin's entry point:

* ``list-plugins`` lists it; ``train --index annoy`` builds the run's index with it; ``recall``
  serves from that index, whose file records the index kind and the providing package;
* without the plugin, ``recall`` on that run fails and names the package to install. ``make``
  installs the plugin into .venv as well, so there "without" means not loaded: the plugin host's
  ``RECHUB_PLUGINS`` selection lists every plugin but this one.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from plugin_sources import rechub_command, run

from rechub_core.index import read_header

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "plugins" / "rechub_plugins_annoy"

TRAIN_CONFIG = """\
[model]
name = "YoutubeDNN"

[data]
synthetic_users = 150
synthetic_items = 80
max_len = 10

[index]
name = "annoy"
params = { n_trees = 20, metric = "dot" }
"""

pytest.importorskip("annoy", reason="the annoy package is not installed")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The plugin pip-installed into ``TMP/site`` and a run trained with ``--index annoy``."""
    root = tmp_path_factory.mktemp("annoy_plugin")
    source = root / "source"  # build from a copy: building in place would litter the repo
    shutil.copytree(
        PLUGIN, source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RECHUB_"))}
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    pip += ["--no-build-isolation", "--no-cache-dir", "--target", str(root / "site")]
    done = run([*pip, str(source)], env, root)
    assert done.returncode == 0, done.stderr
    path = os.pathsep.join(p for p in (str(root / "site"), env.get("PYTHONPATH", "")) if p)
    env.update(PYTHONPATH=path, OMP_NUM_THREADS="1", COLUMNS="200")
    (root / "small.toml").write_text(TRAIN_CONFIG, encoding="utf-8")
    train = [*rechub_command(), "train", "small.toml", "--data", "synthetic", "--epochs", "1"]
    train += ["--index", "annoy", "--out", str(root / "run"), "--quiet"]
    result = run(train, env, root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, env


def test_the_isolated_install_is_listed_and_imported_from_its_folder(installed) -> None:
    root, env = installed
    result = run([*rechub_command(), "list-plugins", "--json"], env, root)
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["annoy"]["status"] == "ok", rows["annoy"]
    assert rows["annoy"]["distribution"] == "rechub-plugins-annoy"
    assert rows["annoy"]["components"] == {"index": ["annoy"]}
    where = run(
        [sys.executable, "-c", "import rechub_plugins_annoy as m; print(m.__file__)"], env, root
    )
    assert where.stdout.strip().startswith(str(root / "site")), where.stdout + where.stderr


def test_train_with_index_annoy_and_recall_serves_from_it(installed) -> None:
    root, env = installed
    run_dir = root / "run"
    header = read_header(run_dir / "index.npz")
    assert (header.kind, header.provider, header.n_items) == ("annoy", "rechub-plugins-annoy", 80)
    assert 'name = "annoy"' in (run_dir / "config.toml").read_text()
    csv = root / "recs.csv"
    result = run(
        [
            *rechub_command(),
            "recall",
            str(run_dir),
            "--users",
            "all",
            "-k",
            "5",
            "--output",
            str(csv),
        ],
        env,
        root,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = csv.read_text().splitlines()
    assert lines[0] == "user_id,rank,item_id,score"
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 5 * len({r[0] for r in rows}) > 0  # five items for every user
    scores = [float(r[3]) for r in rows[:5]]
    assert scores == sorted(scores, reverse=True)


def test_without_the_plugin_recall_names_the_package_to_install(installed) -> None:
    root, env = installed
    bare = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    bare["RECHUB_PLUGINS"] = "dssm,seq,multiinterest"  # everything but annoy
    result = run([*rechub_command(), "recall", str(root / "run"), "--user", "1"], bare, root)
    assert result.returncode != 0
    message = " ".join((result.stdout + result.stderr).split())
    assert "holds an index of kind 'annoy'" in message, message
    assert "install rechub-plugins-annoy" in message, message
