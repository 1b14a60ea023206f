"""rechub_core.io: atomic writes (old or new file, never a partial one, the umask's mode), safe
loads, the checks that run before any long work, and the fault-injection switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rechub_core.errors import CheckpointError
from rechub_core.io import (
    FAULT_ENV,
    atomic_path,
    check_output_dir,
    check_output_file,
    ensure_writable_dir,
    file_mode,
    load_torch,
    remove_stale_temp_files,
    save_torch,
    write_json,
    write_text,
)

# --- atomic writes -----------------------------------------------------------------------------


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "notes.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".notes.txt.")
        tmp.write_text("first")
        assert not target.exists()  # nothing at the target until the block ends
    assert target.read_text() == "first"

    with pytest.raises(ValueError, match="half way"), atomic_path(target) as tmp:
        tmp.write_text("sec")
        raise ValueError("half way")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["notes.txt"]  # no temp left


def test_written_files_get_the_mode_open_would_give(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        assert file_mode() == 0o640
        write_text(tmp_path / "a.txt", "x")
        save_torch(tmp_path / "b.pt", {"x": 1})
    finally:
        os.umask(old)
    for name in ("a.txt", "b.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name  # not mkstemp's 0o600


@settings(max_examples=50, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",))))
def test_write_text_round_trips_any_text(tmp_path_factory: pytest.TempPathFactory, text: str):
    path = tmp_path_factory.mktemp("text") / "t.txt"
    write_text(path, text)
    assert path.read_bytes().decode("utf-8") == text  # bytes: no newline translation


def test_write_json_is_indented_and_keeps_key_order(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_json(path, {"b": 1, "a": [1.5, "x"], "p": Path("/x")})
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "b": 1' in text
    assert json.loads(text) == {"b": 1, "a": [1.5, "x"], "p": "/x"}  # default=str
    assert list(json.loads(text)) == ["b", "a", "p"]


def test_a_write_that_fails_keeps_the_previous_file_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "checkpoint.pt"
    save_torch(target, {"epoch": 1})

    def disk_full(obj: object, f: object) -> None:
        Path(str(f)).write_bytes(b"half a chec")
        raise RuntimeError("[enforce fail at inline_container.cc] No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"cannot write .*checkpoint\.pt.*No space left"):
        save_torch(target, {"epoch": 2})
    monkeypatch.undo()
    assert load_torch(target) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".model.pt.abc.tmp").write_bytes(b"x")
    (tmp_path / "model.pt").write_bytes(b"keep")
    (tmp_path / "notes.tmp").write_bytes(b"keep: not ours")
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [".model.pt.abc.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "notes.tmp"]


# --- loads -------------------------------------------------------------------------------------


def test_load_torch_names_a_missing_corrupt_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no file at .*none\.pt; train first"):
        load_torch(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"(?s)cannot read .*bad\.pt.*corrupt or not ours"):
        load_torch(tmp_path / "bad.pt")
    torch.save({"obj": Path("x")}, tmp_path / "pickled.pt")  # an arbitrary object: refused
    with pytest.raises(CheckpointError, match=r"pickled\.pt"):
        load_torch(tmp_path / "pickled.pt")
    save_torch(tmp_path / "ok.pt", {"w": torch.arange(3)})
    assert torch.equal(load_torch(tmp_path / "ok.pt")["w"], torch.arange(3))


# --- checks before long work -------------------------------------------------------------------


def test_ensure_writable_dir_creates_it_and_checks_free_space(tmp_path: Path) -> None:
    folder = ensure_writable_dir(tmp_path / "a" / "b", min_free_bytes=0)
    assert folder.is_dir() and list(folder.iterdir()) == []  # its probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=r"model_path .*file.* is not writable"):
        ensure_writable_dir(tmp_path / "file" / "run")
    with pytest.raises(CheckpointError, match=r"--out .* MiB free .* needs about"):
        ensure_writable_dir(tmp_path, "--out", min_free_bytes=2**60)


def test_check_output_file_writes_nothing_and_names_the_fix(tmp_path: Path) -> None:
    new = tmp_path / "x" / "y" / "out.json"
    assert check_output_file(new, "--output") == new
    assert not (tmp_path / "x").exists()  # nothing created
    with pytest.raises(CheckpointError, match=r"--output .* is a folder; give a file path"):
        check_output_file(tmp_path, "--output")
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(CheckpointError, match="exists; pass --force"):
        check_output_file(tmp_path / "old.json", "--output")
    assert check_output_file(tmp_path / "old.json", "--output", force=True).exists()
    with pytest.raises(CheckpointError, match=r"is a file; choose another path"):
        check_output_file(tmp_path / "old.json" / "inner.json", "--output")


def test_check_output_dir_refuses_a_file_and_creates_nothing(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path / "new" / "run", "--out") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(CheckpointError, match=r"--out .* is a file, not a folder"):
        check_output_dir(tmp_path / "f", "--out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_output_dir_refuses_a_read_only_folder(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match="not writable"):
            check_output_dir(tmp_path / "run", "--out")
    finally:
        tmp_path.chmod(0o700)


# --- fault injection ---------------------------------------------------------------------------


def test_fault_env_kills_the_process_right_after_its_kth_write(tmp_path: Path) -> None:
    script = (
        "import sys\nfrom rechub_core.io import write_text\n"
        "for i in range(4):\n    write_text(f'{sys.argv[1]}/f{i}.txt', str(i))\n"
    )
    env = {**os.environ, FAULT_ENV: "2"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, timeout=60
    )
    assert result.returncode == -9  # SIGKILL, as a crash would
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0.txt", "f1.txt"]  # both complete
