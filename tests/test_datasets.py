"""Loaders, the MovieLens downloader (against a local http.server) and the synthetic generator."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rechub_core import datasets
from rechub_core.datasets import (
    DEFAULT_MD5,
    DEFAULT_SHA256,
    DEFAULT_URL,
    Interactions,
    download_movielens_100k,
    find_movielens_100k,
    load_interactions_file,
    load_movielens_100k,
)
from rechub_core.errors import InputError
from rechub_core.synthetic import synthetic_interactions

# --------------------------------------------------------------------------- MovieLens-100K


def test_load_movielens_100k() -> None:
    data_dir = find_movielens_100k()
    if data_dir is None:
        pytest.skip(
            "MovieLens-100K not found: set RECHUB_DATA_DIR to the folder holding ml-100k/ "
            "(default ../shared/data relative to the repo root)"
        )
    inter = load_movielens_100k(data_dir)
    assert isinstance(inter, Interactions) and inter.name == "ml-100k"
    ev = inter.events
    assert list(ev.columns) == ["user_id", "item_id", "timestamp"]
    assert len(ev) == 100_000
    assert ev["user_id"].nunique() == 943 and ev["item_id"].nunique() == 1682
    assert inter.users is not None and inter.items is not None
    assert len(inter.users) == 943 and len(inter.items) == 1682
    assert list(inter.users.columns) == ["gender", "age", "occupation"]
    assert inter.users.loc[1].tolist() == ["M", "18-24", "technician"]  # 1|24|M|technician
    assert inter.users.loc[2, "age"] == "50-55"  # 53
    assert set(inter.users["age"]) <= {"<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"}
    assert inter.items.loc[1].tolist() == ["Toy Story (1995)", "Animation"]
    assert inter.items.loc[2, "category"] == "Action"  # GoldenEye: Action|Adventure|Thriller
    assert inter.items["category"].nunique() <= 19
    if data_dir.name == "ml-100k":  # the parent folder works too
        assert len(load_movielens_100k(data_dir.parent).events) == 100_000


def _write_fake_ml100k(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("1\t10\t5\t100\n1\t20\t3\t101\n2\t10\t4\t100\n")
    (folder / "u.user").write_text("1|17|F|student|00000\n2|56|M|other|11111\n")
    flags_a = "|".join(["0"] * 3 + ["1"] + ["0"] * 15)
    flags_none = "|".join(["0"] * 19)
    text = f"10|Caf\xe9 (1990)|01-Jan-1990||url|{flags_a}\n20|Other (1991)|||url|{flags_none}\n"
    (folder / "u.item").write_bytes(text.encode("latin-1"))


def test_load_movielens_small_fake_and_missing_files(tmp_path: Path) -> None:
    _write_fake_ml100k(tmp_path / "ml-100k")
    inter = load_movielens_100k(tmp_path)  # parent folder accepted
    assert inter.users is not None and inter.items is not None
    assert inter.users["age"].tolist() == ["<18", "56+"]
    assert inter.items.loc[10].tolist() == ["Café (1990)", "Animation"]
    assert inter.items.loc[20, "category"] == "unknown"
    (tmp_path / "ml-100k" / "u.user").unlink()
    with pytest.raises(InputError, match=r"u\.user.*--data-dir.*rechub data fetch movielens-100k"):
        load_movielens_100k(tmp_path / "ml-100k")
    with pytest.raises(InputError, match=r"u\.data"):
        load_movielens_100k(tmp_path / "nowhere")


# --------------------------------------------------------------------------- download


def _fake_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t5\t100\n")
        zf.writestr("ml-100k/u.user", "1|30|F|writer|00000\n")
        zf.writestr("ml-100k/u.item", "10|A (1990)|||url|" + "|".join(["0"] * 19) + "\n")
        zf.writestr("ml-100k/README", "fake")
    return buf.getvalue()


@pytest.fixture
def zip_server() -> Iterator[tuple[str, bytes, list[str]]]:
    payload = _fake_zip()
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path != "/ml-100k.zip":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", payload, hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_verifies_extracts_and_caches(
    tmp_path: Path, zip_server: tuple[str, bytes, list[str]]
) -> None:
    base, payload, hits = zip_server
    md5 = hashlib.md5(payload).hexdigest()
    sha = hashlib.sha256(payload).hexdigest()
    cache = tmp_path / "cache"
    out = download_movielens_100k(cache, url=f"{base}/ml-100k.zip", md5=md5, sha256=sha, timeout=5)
    assert out == cache / "ml-100k"
    assert (out / "u.data").read_text() == "1\t10\t5\t100\n"
    assert sorted(p.name for p in cache.iterdir()) == ["ml-100k"]  # no temp zip / dir left
    assert len(load_movielens_100k(out).events) == 1
    assert hits == ["/ml-100k.zip"]
    # already present and valid: nothing downloaded
    again = download_movielens_100k(cache, url=f"{base}/ml-100k.zip", md5=md5, sha256=None)
    assert again == out and hits == ["/ml-100k.zip"]


def test_download_checksum_mismatch_leaves_nothing(
    tmp_path: Path, zip_server: tuple[str, bytes, list[str]]
) -> None:
    base, _, _ = zip_server
    cache = tmp_path / "cache"
    with pytest.raises(InputError, match=r"checksum mismatch.*md5"):
        download_movielens_100k(cache, url=f"{base}/ml-100k.zip", md5="0" * 32, sha256=None)
    assert not cache.exists() or list(cache.iterdir()) == []
    with pytest.raises(InputError, match=r"checksum mismatch.*sha256"):
        download_movielens_100k(cache, url=f"{base}/ml-100k.zip", md5=None, sha256="0" * 64)
    assert not cache.exists() or list(cache.iterdir()) == []
    with pytest.raises(InputError, match="could not download"):
        download_movielens_100k(cache, url=f"{base}/missing.zip", md5="0" * 32, timeout=5)
    assert not cache.exists() or list(cache.iterdir()) == []
    with pytest.raises(InputError, match="checksum"):
        download_movielens_100k(cache, url=f"{base}/ml-100k.zip", md5=None, sha256=None)


def test_default_checksums_are_the_published_ones() -> None:
    assert DEFAULT_URL == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert len(DEFAULT_MD5) == 32 and len(DEFAULT_SHA256) == 64


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_seeded_structured_and_fast() -> None:
    t0 = time.perf_counter()
    inter = synthetic_interactions(seed=7)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5  # generous on a shared machine; typically ~0.1 s
    again = synthetic_interactions(seed=7)
    pd.testing.assert_frame_equal(inter.events, again.events)
    assert not inter.events.equals(synthetic_interactions(seed=8).events)
    ev = inter.events
    assert list(ev.columns) == ["user_id", "item_id", "timestamp"]
    lengths = ev.groupby("user_id").size()
    assert len(lengths) == 1000 and lengths.min() >= 8 and lengths.max() <= 40
    assert not ev.duplicated(["user_id", "item_id"]).any()
    assert (ev.groupby("user_id")["timestamp"].diff().dropna() > 0).all()
    assert inter.items is not None and inter.users is not None
    assert len(inter.items) == 500 and inter.items["category"].nunique() == 10
    # users stay within 1-3 interest clusters
    cats = ev["item_id"].map(inter.items["category"])
    per_user = cats.groupby(ev["user_id"]).nunique()
    assert per_user.max() <= 3 and (per_user == 1).any()
    # the segment is correlated with the user's first cluster
    first_cat = cats.groupby(ev["user_id"]).first()
    seg = inter.users["segment"].reindex(first_cat.index).str[1:]
    assert (seg == first_cat.str[1:]).mean() > 0.7
    # popularity is skewed: the top 10% of items get over twice their uniform share
    counts = np.sort(ev["item_id"].value_counts().to_numpy())[::-1]
    assert counts[: len(counts) // 10].sum() > 0.2 * counts.sum()
    assert counts[0] > 3 * np.median(counts)


# --------------------------------------------------------------------------- user files


def test_load_interactions_file_csv(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    pd.DataFrame(
        {"uid": ["a", "b", "a"], "sku": ["x1", "x2", "x3"], "ts": [3, 1, 2], "extra": [0, 0, 0]}
    ).to_csv(path, index=False)
    inter = load_interactions_file(path, user_col="uid", item_col="sku", time_col="ts")
    assert inter.name == "log" and inter.users is None and inter.items is None
    assert list(inter.events.columns) == ["user_id", "item_id", "timestamp"]
    assert inter.events["item_id"].tolist() == ["x1", "x2", "x3"]
    assert inter.events["timestamp"].tolist() == [3, 1, 2]
    with pytest.raises(InputError, match=r"'user_id'.*uid.*--user-col"):
        load_interactions_file(path)
    ints = tmp_path / "ints.csv"
    ints.write_text("user_id,item_id,timestamp\n1,10,2020-01-02\n1,11,2020-01-01\n")
    ev = load_interactions_file(ints).events
    assert ev["item_id"].tolist() == [10, 11]
    assert ev["timestamp"].iloc[0] > ev["timestamp"].iloc[1]


def test_load_interactions_file_rejects_nan_and_missing_pyarrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nan.csv"
    path.write_text("user_id,item_id,timestamp\n1,10,5\n2,,6\n")
    with pytest.raises(InputError, match=r"'item_id'.*1 empty/NaN"):
        load_interactions_file(path)
    with pytest.raises(InputError, match="does not exist"):
        load_interactions_file(tmp_path / "nope.csv")
    pq = tmp_path / "log.parquet"
    pq.write_bytes(b"PAR1")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        datasets.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyarrow" else real_find_spec(name, *a),
    )
    with pytest.raises(InputError, match="pyarrow"):
        load_interactions_file(pq)


def test_synthetic_switch_and_follow_probabilities() -> None:
    """p_switch/p_follow are validated; p_follow=0 never walks a successor chain, and pure
    multi-interest users (p_switch=1) spread their items over more than one cluster."""
    with pytest.raises(InputError, match="p_switch"):
        synthetic_interactions(p_switch=1.5)
    with pytest.raises(InputError, match="p_follow"):
        synthetic_interactions(p_follow=-0.1)
    mixed = synthetic_interactions(n_users=300, seed=3, p_switch=1.0, p_follow=0.0)
    calm = synthetic_interactions(n_users=300, seed=3, p_switch=0.0, p_follow=0.7)

    def clusters_per_user(inter) -> float:
        cat = inter.events["item_id"].map(inter.items["category"])
        return float(cat.groupby(inter.events["user_id"]).nunique().mean())

    assert clusters_per_user(calm) == 1.0  # never switches: one cluster each
    assert clusters_per_user(mixed) > 1.5
