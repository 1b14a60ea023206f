"""Every bad input a hostile user tried (issue #19): exit code 1 or 2, one line that names the
problem and the fix, no traceback, and nothing written anywhere."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
import torch
from typer.testing import CliRunner

from rechub_core.cli import _common, make_app
from rechub_core.config import config_from_dict, save_config
from rechub_core.runs import train_run

TINY = """
[model]
name = "DSSM"
[model.params]
embed_dim = 8
user_params = { dims = [16] }
item_params = { dims = [16] }
[data]
source = "synthetic"
synthetic_users = 60
synthetic_items = 40
max_len = 10
[train]
epochs = 1
batch_size = 64
"""


def _config(tmp: Path, extra: str = "", replace: tuple[str, str] = ("", "")) -> str:
    path = tmp / "run.toml"
    path.write_text(TINY.replace(*replace) + extra)
    return str(path)


def _log(tmp: Path, rows: str) -> str:
    path = tmp / "log.csv"
    path.write_text("user_id,item_id,timestamp\n" + rows)
    return str(path)


def _damage(name: str, text: str) -> Callable[[Path], str]:
    def setup(tmp: Path) -> str:
        (tmp / "run" / name).write_text(text)
        return str(tmp / "run")

    return setup


# (id, args with {tmp}/{run}/{cfg}/{log}, what the line must say: problem and fix)
CASES: list[tuple[str, Callable[[Path], list[str]], list[str]]] = [
    ("lr-nan", lambda t: ["train", _config(t), "--lr", "nan", "--out", f"{t}/new"],
     ["lr must be > 0, got nan", "@ $.train"]),
    ("lr-inf", lambda t: ["train", _config(t), "--lr", "inf", "--out", f"{t}/new"],
     ["lr must be > 0, got inf"]),
    ("device-tpu", lambda t: ["train", _config(t), "--device", "tpu", "--out", f"{t}/new"],
     ["device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"]),
    ("epochs-0", lambda t: ["train", _config(t), "--epochs", "0", "--out", f"{t}/new"],
     ["epochs must be > 0, got 0"]),
    ("demo-epochs-negative", lambda t: ["demo", "--epochs", "-1", "--out", f"{t}/new"],
     ["--epochs must be at least 1, got -1", "pass --epochs 1 or more"]),
    ("unknown-model-param",
     lambda t: ["train", _config(t, replace=("embed_dim", "embed_dimm")), "--out", f"{t}/new"],
     ["['embed_dimm']", "DSSM does not accept", "accepted keys:", "embed_dim,"]),
    ("config-is-a-folder", lambda t: ["train", str(t / "run"), "--out", f"{t}/new"],
     ["is a folder", "config.toml"]),
    ("data-is-a-folder",
     lambda t: ["train", _config(t), "--data", str(t / "run"), "--out", f"{t}/new"],
     ["is a folder", "pass the CSV/parquet/sequence file inside it"]),
    ("data-missing",
     lambda t: ["train", _config(t), "--data", str(t / "nope.csv"), "--out", f"{t}/new"],
     ["neither 'synthetic', 'movielens-100k' nor an existing file", "check the path"]),
    ("bad-metric",
     lambda t: ["train", _config(t, replace=("epochs = 1", 'epochs = 1\nmetric = "ndcg@11"')),
                "--out", f"{t}/new"],
     ["train.metric 'ndcg@11' is not computed", "ndcg@10"]),
    ("bad-index-kind",
     lambda t: ["train", _config(t, '[index]\nname = "faiss"\nparams = { kind = "bogus" }\n'),
                "--out", f"{t}/new"],
     ["kind", "'bogus'", "flat"]),
    ("timestamp-abc",
     lambda t: ["train", _config(t), "--data", _log(t, "1,10,5\n1,11,abc\n"), "--out",
                f"{t}/new"],
     ["column 'timestamp' holds 'abc' at data row 1 (line 3)", "fix or drop that row"]),
    ("min-interactions",
     lambda t: ["train", _config(t), "--data", _log(t, "1,10,5\n1,11,6\n1,12,7\n"), "--out",
                f"{t}/new"],
     ["no user has at least min_interactions=5", "--min-interactions", "data.min_interactions"]),
    ("out-is-a-users-folder", lambda t: ["train", _config(t), "--out", str(t / "mine")],
     ["is a non-empty folder that is not a rechub run", "--force"]),
    ("damaged-encoders", lambda t: ["evaluate", _damage("encoders.json", "{not json")(t)],
     ["encoders.json is damaged", "retrain"]),
    ("damaged-schema",
     lambda t: ["recall", _damage("schema.json", '{"x": 1}')(t), "--user", "1"],
     ["schema.json is damaged", "retrain"]),
    ("recall-output-folder",
     lambda t: ["recall", str(t / "run"), "--users", "all", "--output", str(t / "mine")],
     ["--output", "is a folder", "give a file path"]),
    ("recall-output-unwritable",
     lambda t: ["recall", str(t / "run"), "--users", "all", "--output",
                str(t / "mine" / "notes.txt" / "recs.csv")],
     ["--output", "is not writable", "notes.txt' is a file"]),
    ("recall-output-exists",
     lambda t: ["recall", str(t / "run"), "--users", "all", "--output",
                str(t / "mine" / "notes.txt")],
     ["exists; pass --force to overwrite it"]),
    ("recall-user-leading-zero", lambda t: ["recall", str(t / "run"), "--user", "01"],
     ["user_id ids of this run are integers; '01' is not one", "without leading zeros"]),
    ("export-out-unwritable",
     lambda t: ["export", str(t / "run"), "--out", str(t / "mine" / "notes.txt" / "onnx")],
     ["export --out", "is not writable", "notes.txt' is a file; choose another path"]),
    ("export-no-run", lambda t: ["export", str(t / "nope" / "run")],
     ["no run folder at", "train one with `rechub train --out"]),
    ("killed-run", lambda t: ["evaluate", str(t / "killed")],
     ["interrupted", "finish it with `rechub train --resume --out ", "killed`"]),
]  # fmt: skip
if not torch.cuda.is_available():
    CASES.append(
        ("device-cuda-on-cpu-build",
         lambda t: ["train", _config(t), "--device", "cuda", "--out", f"{t}/new"],
         ["device 'cuda'", "--device cpu"])
    )  # fmt: skip


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("good")
    cfg = config_from_dict(__import__("tomllib").loads(TINY))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_run(cfg, base / "run", verbose=False)
        # a killed first train: only its staging folder with a config
        (base / "killed.staging").mkdir()
        save_config(attrs.evolve(cfg), base / "killed.staging" / "config.toml")
    finally:
        torch.set_num_threads(threads)
    return base


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture()
def wide_console() -> Iterator[None]:
    width = _common.console.width
    _common.console.width = 2000  # a message is one line; the terminal may wrap it
    yield
    _common.console.width = width


@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_line_with_its_fix_and_writes_nothing(
    args: Callable[[Path], list[str]],
    expected: list[str],
    good_run: Path,
    tmp_path: Path,
    wide_console: None,
) -> None:
    shutil.copytree(good_run, tmp_path, dirs_exist_ok=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's own file\n")
    argv = args(tmp_path)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(make_app(), argv)
    output = result.output
    assert result.exit_code in (1, 2), (argv, result.exit_code, output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in output
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert _snapshot(tmp_path) == before, "a bad input wrote or changed a file"
