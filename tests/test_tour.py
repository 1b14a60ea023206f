"""The README's tour, run as a newcomer would: its commands in order, in a fresh folder, with no
``../shared`` data, MovieLens-100K fetched from a local archive standing in for GroupLens'
(``RECHUB_ML100K_URL`` + ``RECHUB_ML100K_MD5``, the documented mirror settings).

Each command must exit 0 and leave the files it names; ``rechub serve`` (which never exits)
must answer ``GET /health``. Training is cut to one epoch (``--epochs 1``) and the server takes
a free port, so the test stays fast and isolated; everything else is the README's text.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rechub_core.cli import make_app
from rechub_core.datasets import find_movielens_100k

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_commands() -> list[list[str]]:
    """The ``.venv/bin/rechub ...`` lines of the README's "A short tour" code block."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## A short tour", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "README: no code block under '## A short tour'"
    commands = []
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            argv = shlex.split(line)
            assert argv[0] == ".venv/bin/rechub", f"README tour line is not a rechub call: {line}"
            commands.append(argv[1:])
    return commands


def local_archive(tmp: Path) -> tuple[Path, str]:
    """A zip laid out like GroupLens' ml-100k.zip (an ``ml-100k/`` folder), and its MD5."""
    source = find_movielens_100k()
    if source is None:
        pytest.skip(
            "MovieLens-100K not found ($RECHUB_DATA_DIR or ../shared/data); the tour test "
            "builds its stand-in archive from it"
        )
    archive = tmp / "mirror" / "ml-100k.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.iterdir()):
            if path.is_file():
                zf.write(path, f"ml-100k/{path.name}")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def expected_files(argv: list[str]) -> list[str]:
    """Files (relative to the working folder) that a tour command says it writes."""
    command = argv[0]
    if command == "data":
        return ["cache/ml-100k/u.data", "cache/ml-100k/u.item", "cache/ml-100k/u.user"]
    if command == "train":
        out = argv[argv.index("--out") + 1]
        return [f"{out}/{name}" for name in ("config.toml", "metrics.json", "model.pt")]
    if command == "export":
        return [f"{argv[1]}/onnx/user_tower.onnx", f"{argv[1]}/onnx/item_tower.onnx"]
    if command == "recall" and "--output" in argv:
        return [argv[argv.index("--output") + 1]]
    return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_answers_health(argv: list[str], work: Path) -> None:
    """Run the tour's ``rechub serve`` (on a free port) as a process until GET /health
    answers 200, then stop it; fail with its output if it exits or never answers."""
    port = free_port()
    argv = [*argv[: argv.index("--port")], "--port", str(port)] if "--port" in argv else argv
    rechub = Path(sys.executable).parent / "rechub"
    proc = subprocess.Popen(
        [str(rechub), *argv], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"rechub {' '.join(argv)} exited {proc.returncode}:\n{out}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"rechub {' '.join(argv)}: /health did not answer within 120 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_readme_tour_lists_the_data_step_and_every_run_command():
    names = [argv[0] for argv in tour_commands()]
    assert names.index("data") < names.index("train") < names.index("evaluate")
    assert {"list-plugins", "list-components", "export", "recall"} <= set(names)


@pytest.mark.slow
def test_readme_tour_runs_in_a_fresh_folder(tmp_path, monkeypatch):
    archive, md5 = local_archive(tmp_path)
    work = tmp_path / "fresh-clone"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RECHUB_DATA_DIR", str(work / "no-shared-data"))  # no ../shared here
    monkeypatch.setenv("RECHUB_CACHE", str(work / "cache"))
    monkeypatch.setenv("RECHUB_ML100K_URL", archive.as_uri())
    monkeypatch.setenv("RECHUB_ML100K_MD5", md5)
    runner = CliRunner()
    app = make_app()
    steps = [["demo", "--epochs", "1"], *tour_commands()]  # demo stands in for `make demo`
    for argv in steps:
        if argv[0] == "train":
            argv = [*argv, "--epochs", "1"]
        if argv[0] == "serve":  # a server never exits: start it, ask /health, stop it
            serve_answers_health(argv, work)
            continue
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, f"rechub {' '.join(argv)}:\n{result.output}"
        if argv[0] == "export":  # the README: "checked with onnxruntime"
            assert result.output.count("onnxruntime vs PyTorch") == 2, result.output
        for name in expected_files(argv):
            assert (work / name).is_file(), f"rechub {' '.join(argv)} did not write {name}"
    evaluate = runner.invoke(app, ["evaluate", "runs/dssm"])
    for metric in ("recall", "precision", "ndcg", "hit", "mrr"):  # every metric the README names
        assert metric in evaluate.output
    for k in ("@10", "@20", "@50"):
        assert k in evaluate.output
    assert max(len(line) for line in evaluate.output.splitlines()) <= 80
    unknown = runner.invoke(app, ["recall", "runs/dssm", "--user", "99999"])
    assert unknown.exit_code == 1
    said = " ".join(unknown.output.split())
    assert "not in this run" in said and "--users all" in said
    assert "fit the encoder" not in said  # training advice does not help recall
    recs = (work / "recs.csv").read_text().splitlines()
    assert recs[0] == "user_id,rank,item_id,score" and len(recs) > 50 * 900
