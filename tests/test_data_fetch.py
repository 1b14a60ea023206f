"""MovieLens-100K on a fresh machine: the cache, a mirror with its checksum, ``rechub data``,
and what a failed fetch leaves behind (nothing). A tiny archive laid out like GroupLens' stands
in for the real one (the network is not used)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from rechub_core import datasets
from rechub_core.cli import _common as cli_common
from rechub_core.cli import make_app
from rechub_core.errors import InputError


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small ml-100k.zip mirror named by the environment; cache and data dir in tmp_path."""
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t100\n")
        zf.writestr("ml-100k/u.item", "1|Toy Story (1995)|01-Jan-1995||url" + "|0" * 19 + "\n")
        zf.writestr("ml-100k/u.user", "1|24|M|technician|85711\n")
    monkeypatch.setattr(cli_common, "console", Console(width=250))  # long paths stay on a line
    monkeypatch.setenv(datasets.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv("RECHUB_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv(datasets.ENV_ML100K_URL, archive.as_uri())
    monkeypatch.setenv(datasets.ENV_ML100K_MD5, hashlib.md5(archive.read_bytes()).hexdigest())
    return archive


def test_default_source_is_the_official_archive_with_its_published_md5(monkeypatch):
    monkeypatch.delenv(datasets.ENV_ML100K_URL, raising=False)
    url, md5, sha256 = datasets.movielens_100k_source()
    assert url == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert md5 == "0e33842e24a9c977be4e0107933c0723" and sha256


def test_cache_dir_follows_rechub_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.ENV_CACHE, str(tmp_path / "c"))
    assert datasets.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(datasets.ENV_CACHE)
    assert datasets.default_cache_dir() == Path.home() / ".cache" / "rechub"


def test_a_mirror_needs_its_md5(mirror, monkeypatch):
    monkeypatch.delenv(datasets.ENV_ML100K_MD5)
    with pytest.raises(InputError, match="RECHUB_ML100K_MD5"):
        datasets.movielens_100k_source()


def test_not_found_names_the_fetch_command(mirror):
    with pytest.raises(InputError) as info:
        datasets.locate_movielens_100k(None)
    assert "rechub data fetch movielens-100k" in str(info.value)
    assert "--download" in str(info.value)


def test_download_flag_fetches_into_the_cache_once(mirror, tmp_path):
    found = datasets.locate_movielens_100k(None, download=True)
    assert found == tmp_path / "cache" / "ml-100k" and (found / "u.data").is_file()
    mirror.unlink()  # a second call reuses the cache, it does not download again
    assert datasets.locate_movielens_100k(None) == found


def test_checksum_mismatch_leaves_nothing_behind(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.ENV_ML100K_MD5, "0" * 32)
    result = CliRunner().invoke(make_app(), ["data", "fetch", "movielens-100k"])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "checksum mismatch" in said and "RECHUB_ML100K_MD5" in said
    assert not (tmp_path / "cache").exists()


def test_data_fetch_then_path(mirror, tmp_path):
    runner, app = CliRunner(), make_app()
    fetched = runner.invoke(app, ["data", "fetch", "movielens-100k"])
    assert fetched.exit_code == 0, fetched.output
    assert "checksum verified" in fetched.output
    again = runner.invoke(app, ["data", "fetch", "ml-100k"])
    assert "already in the cache" in again.output
    shown = " ".join(runner.invoke(app, ["data", "path"]).output.split())
    assert f"cache: {tmp_path / 'cache'}" in shown
    assert f"movielens-100k: {tmp_path / 'cache' / 'ml-100k'}" in shown


def test_unknown_data_set_lists_the_known_ones(mirror):
    result = CliRunner().invoke(make_app(), ["data", "fetch", "ml-1m"])
    assert result.exit_code == 1 and "knows: movielens-100k" in result.output


def test_train_without_the_data_names_the_fix_and_writes_nothing(mirror, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["train", "--model", "DSSM", "--data", "movielens-100k", "--out", "runs/dssm"]
    result = CliRunner().invoke(make_app(), argv)
    assert result.exit_code == 1
    assert "rechub data fetch movielens-100k" in " ".join(result.output.split())
    assert list(work.iterdir()) == []  # no run folder, no staging folder, no lock
