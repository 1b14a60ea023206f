"""Item indexes (rechub_core.index): exactness, exclusion, multi-interest merge, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rechub_core.errors import CheckpointError, InputError
from rechub_core.index import ExactIndex, FaissIndex, ItemIndex, load_index


def random_items(seed: int, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    ids = rng.choice(10 * n + 100, size=n, replace=False).astype(np.int64)  # not 0..N-1
    return vectors, ids


def brute_force(
    vectors: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    k: int,
    exclude: list[list[int]] | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Best-first ids (only the valid ones) and the (B, N) max-over-interests score table."""
    q = queries if queries.ndim == 3 else queries[:, None, :]
    scores = np.einsum("bid,nd->bin", q.astype(np.float64), vectors.astype(np.float64)).max(1)
    out = []
    for b in range(q.shape[0]):
        s = scores[b].copy()
        if exclude is not None:
            s[np.isin(ids, exclude[b])] = -np.inf
        order = np.argsort(-s, kind="stable")
        out.append(ids[order[np.isfinite(s[order])]][:k])
    return out, scores


def check_against_brute_force(
    index: ItemIndex,
    vectors: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    k: int,
    exclude: list[list[int]] | None = None,
) -> None:
    """Tie-robust comparison: the returned scores are the true best-k scores, each returned id
    really has its returned score, no duplicates, no excluded ids, -1/-inf padding at the end."""
    got_ids, got_scores = index.search(queries, k, exclude=exclude)
    assert got_ids.shape == got_scores.shape == (queries.shape[0], k)
    assert got_ids.dtype == np.int64 and got_scores.dtype == np.float32
    want, table = brute_force(vectors, ids, queries, k, exclude)
    pos_of = {int(i): p for p, i in enumerate(ids)}
    for b in range(queries.shape[0]):
        n_valid = len(want[b])
        row_ids, row_scores = got_ids[b], got_scores[b]
        assert (row_ids[n_valid:] == -1).all() and np.isneginf(row_scores[n_valid:]).all()
        valid = row_ids[:n_valid]
        assert (valid >= 0).all()
        assert len(set(valid.tolist())) == n_valid, "duplicate ids"
        if exclude is not None:
            assert not set(valid.tolist()) & set(exclude[b]), "excluded id returned"
        true_scores = table[b, [pos_of[int(i)] for i in valid]]
        np.testing.assert_allclose(row_scores[:n_valid], true_scores, rtol=1e-4, atol=1e-4)
        want_scores = table[b, [pos_of[int(i)] for i in want[b]]]
        np.testing.assert_allclose(row_scores[:n_valid], want_scores, rtol=1e-4, atol=1e-4)
        assert (np.diff(row_scores[:n_valid]) <= 1e-6).all(), "not best first"


def random_exclude(rng: np.random.Generator, ids: np.ndarray, n_queries: int) -> list[list[int]]:
    out = []
    for _ in range(n_queries):
        size = int(rng.integers(0, len(ids) + 1))
        chosen = rng.choice(ids, size=size, replace=False).tolist()
        chosen += [int(ids.max()) + 1 + int(rng.integers(0, 5))]  # an id not in the index
        out.append(chosen)
    return out


# --------------------------------------------------------------------------- exactness


def test_exact_and_faiss_flat_agree() -> None:
    vectors, ids = random_items(0, 2000, 16)
    queries = np.random.default_rng(1).standard_normal((64, 16)).astype(np.float32)
    exact, flat = ExactIndex(), FaissIndex("flat")
    exact.build(vectors, ids)
    flat.build(vectors, ids)
    e_ids, e_scores = exact.search(queries, 20)
    f_ids, f_scores = flat.search(queries, 20)
    np.testing.assert_array_equal(e_ids, f_ids)
    np.testing.assert_allclose(e_scores, f_scores, rtol=1e-5, atol=1e-5)
    check_against_brute_force(exact, vectors, ids, queries, 20)
    # with exclusion and multi-interest queries too
    rng = np.random.default_rng(2)
    exclude = [
        rng.choice(ids, size=int(rng.integers(0, 50)), replace=False).tolist() for _ in range(64)
    ]
    multi = rng.standard_normal((64, 3, 16)).astype(np.float32)
    for q in (queries, multi):
        e_ids, e_scores = exact.search(q, 20, exclude=exclude)
        f_ids, f_scores = flat.search(q, 20, exclude=exclude)
        np.testing.assert_array_equal(e_ids, f_ids)
        np.testing.assert_allclose(e_scores, f_scores, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    dim=st.integers(1, 8),
    interests=st.integers(0, 4),
    k=st.integers(1, 70),
    kind=st.sampled_from(["exact", "flat"]),
)
def test_exclusion_and_multi_interest_match_brute_force(
    seed: int, n: int, dim: int, interests: int, k: int, kind: str
) -> None:
    vectors, ids = random_items(seed, n, dim)
    rng = np.random.default_rng(seed + 1)
    shape = (7, dim) if interests == 0 else (7, interests, dim)
    queries = rng.standard_normal(shape).astype(np.float32)
    index: ItemIndex = ExactIndex() if kind == "exact" else FaissIndex("flat")
    index.build(vectors, ids)
    check_against_brute_force(index, vectors, ids, queries, k)
    check_against_brute_force(index, vectors, ids, queries, k, random_exclude(rng, ids, 7))


@pytest.mark.parametrize(
    "make",
    [lambda: FaissIndex("hnsw"), lambda: FaissIndex("ivf", nlist=50, nprobe=1)],
    ids=["hnsw", "ivf"],
)
def test_exclusion_still_returns_k_on_approximate_indexes(make) -> None:
    """Rows that come back short are searched again wider (more candidates; IVF: more lists).
    With nprobe=1 and 30 items per list, a single pass would return fewer than k."""
    vectors, ids = random_items(3, 1500, 16)
    rng = np.random.default_rng(4)
    queries = rng.standard_normal((40, 2, 16)).astype(np.float32)
    index = make()
    index.build(vectors, ids)
    # exclude each query's own 300 best items: a naive search would return only excluded ids
    best, _ = brute_force(vectors, ids, queries, 300)
    exclude = [b.tolist() for b in best]
    got, _ = index.search(queries, 10, exclude=exclude)
    for b in range(40):
        assert (got[b] >= 0).all(), "fewer than k results"
        assert len(set(got[b].tolist())) == 10
        assert not set(got[b].tolist()) & set(exclude[b])


def test_padding_when_fewer_than_k_items_remain() -> None:
    vectors, ids = random_items(5, 6, 4)
    for index in (ExactIndex(), FaissIndex("flat"), FaissIndex("hnsw")):
        index.build(vectors, ids)
        got_ids, got_scores = index.search(
            vectors[:2], 10, exclude=[ids[:2].tolist(), ids.tolist()]
        )
        assert (got_ids[0, :4] >= 0).all() and (got_ids[0, 4:] == -1).all()
        assert np.isfinite(got_scores[0, :4]).all() and np.isneginf(got_scores[0, 4:]).all()
        assert (got_ids[1] == -1).all() and np.isneginf(got_scores[1]).all()


# --------------------------------------------------------------------------- approximate recall


@pytest.fixture(scope="module")
def clustered_5k() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """5k items and 200 queries around 50 random centres (embeddings have cluster structure;
    isotropic Gaussian data is a worst case for IVF)."""
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((50, 32)).astype(np.float32)
    vectors = (centres[rng.integers(0, 50, 5000)] + 0.5 * rng.standard_normal((5000, 32))).astype(
        np.float32
    )
    queries = (centres[rng.integers(0, 50, 200)] + 0.5 * rng.standard_normal((200, 32))).astype(
        np.float32
    )
    ids = rng.permutation(50_000)[:5000].astype(np.int64)
    exact = ExactIndex()
    exact.build(vectors, ids)
    truth, _ = exact.search(queries, 10)
    return vectors, ids, queries, list(truth)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_at_10(kind: str, clustered_5k) -> None:
    vectors, ids, queries, truth = clustered_5k
    index = FaissIndex(kind)
    index.build(vectors, ids)
    got, _ = index.search(queries, 10)
    recall = np.mean(
        [len(set(g.tolist()) & set(t.tolist())) / 10 for g, t in zip(got, truth, strict=True)]
    )
    assert recall >= 0.9, f"{kind} recall@10 = {recall:.3f}"


# --------------------------------------------------------------------------- persistence


@pytest.mark.parametrize(
    "make",
    [
        ExactIndex,
        lambda: FaissIndex("flat"),
        lambda: FaissIndex("hnsw", hnsw_m=16, ef_search=64),
        lambda: FaissIndex("ivf", nlist=16, nprobe=4),
    ],
    ids=["exact", "flat", "hnsw", "ivf"],
)
def test_save_load_round_trip(make, tmp_path) -> None:
    vectors, ids = random_items(8, 1200, 12)
    rng = np.random.default_rng(9)
    queries = rng.standard_normal((30, 2, 12)).astype(np.float32)
    exclude = random_exclude(rng, ids[:40], 30)
    index = make()
    index.build(vectors, ids)
    before = index.search(queries, 15, exclude=exclude)
    path = tmp_path / "sub" / "items.index"
    index.save(path)
    index.save(path)  # overwriting is atomic too
    assert sorted(p.name for p in path.parent.iterdir()) == ["items.index"]  # no temp files left
    for loaded in (load_index(path), type(index).load(path)):
        assert type(loaded) is type(index)
        after = loaded.search(queries, 15, exclude=exclude)
        np.testing.assert_array_equal(before[0], after[0])
        np.testing.assert_array_equal(before[1], after[1])
    if isinstance(index, FaissIndex):
        loaded_f = load_index(path)
        assert isinstance(loaded_f, FaissIndex)
        assert (loaded_f.kind, loaded_f.ef_search, loaded_f.nprobe) == (
            index.kind,
            index.ef_search,
            index.nprobe,
        )


def test_load_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_index(tmp_path / "missing.index")
    bad = tmp_path / "bad.index"
    bad.write_bytes(b"not an index")
    with pytest.raises(CheckpointError, match=r"bad\.index"):
        load_index(bad)
    vectors, ids = random_items(10, 20, 4)
    exact = ExactIndex()
    exact.build(vectors, ids)
    exact.save(tmp_path / "exact.index")
    with pytest.raises(CheckpointError, match="read it with"):
        FaissIndex.load(tmp_path / "exact.index")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("make", [ExactIndex, lambda: FaissIndex("flat")], ids=["exact", "faiss"])
def test_errors(make) -> None:
    index = make()
    assert isinstance(index, ItemIndex)
    vectors, ids = random_items(11, 30, 8)
    with pytest.raises(InputError, match="not built"):
        index.search(vectors[:2], 5)
    with pytest.raises(InputError, match="not built"):
        index.save("unused.index")
    bad = vectors.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        index.build(bad, ids)
    with pytest.raises(InputError, match="duplicate"):
        index.build(vectors, np.zeros(30, dtype=np.int64))
    with pytest.raises(InputError, match="item_ids"):
        index.build(vectors, ids[:10])
    index.build(vectors, ids)
    with pytest.raises(InputError, match=r"dimension 5 .* index dimension 8"):
        index.search(np.zeros((2, 5), dtype=np.float32), 5)
    with pytest.raises(InputError, match="k"):
        index.search(vectors[:2], 0)
    with pytest.raises(InputError, match="NaN"):
        index.search(np.full((2, 8), np.nan, dtype=np.float32), 5)
    with pytest.raises(InputError, match="one list of ids per query"):
        index.search(vectors[:2], 5, exclude=[[1]])


def test_constructor_errors() -> None:
    with pytest.raises(InputError, match="kind"):
        FaissIndex("lsh")
    with pytest.raises(InputError, match="metric"):
        FaissIndex("flat", metric="l2")
    with pytest.raises(InputError, match="nprobe"):
        FaissIndex("ivf", nprobe=0)


# --------------------------------------------------------------------------- large catalogues


def in_batches(vectors: np.ndarray, ids: np.ndarray, size: int):
    for start in range(0, len(ids), size):
        yield vectors[start : start + size], ids[start : start + size]


@pytest.mark.parametrize(
    "make",
    [
        ExactIndex,
        lambda: FaissIndex("flat"),
        lambda: FaissIndex("flat", shards=3),
        lambda: FaissIndex("hnsw", shards=2),
        lambda: FaissIndex("ivf", nlist=8, nprobe=8, shards=2),
    ],
    ids=["exact", "flat", "flat-3-shards", "hnsw-2-shards", "ivf-2-shards"],
)
@pytest.mark.parametrize("n_total", [1201, 900, 5000], ids=["exact-n", "under", "over"])
def test_streamed_and_sharded_builds_match_the_exact_search(make, n_total, tmp_path) -> None:
    """Batches streamed into the index (n_total right, too small or too large) and sharded
    indexes return what exact search returns, and survive save / load_index."""
    vectors, ids = random_items(12, 1201, 8)
    queries = np.random.default_rng(13).standard_normal((25, 8)).astype(np.float32)
    exact = ExactIndex()
    exact.build(vectors, ids)
    want_ids, want_scores = exact.search(queries, 10)
    index = make()
    index.build_from_batches(in_batches(vectors, ids, 250), n_total=n_total)
    assert len(index) == 1201 and index.dim == 8
    got_ids, got_scores = index.search(queries, 10)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)
    assert (got_ids == want_ids).mean() > 0.99  # ties aside
    index.save(tmp_path / "items.index")
    loaded = load_index(tmp_path / "items.index")
    np.testing.assert_array_equal(loaded.search(queries, 10)[0], got_ids)
    if isinstance(index, FaissIndex) and index.shards > 1:
        assert isinstance(loaded, FaissIndex) and loaded.shards == index.shards
        assert sum(s.ntotal for s in loaded._subs) == 1201
        # an overestimated n_total leaves later shards empty (balance, not correctness)
        assert len(loaded._subs) == (1 if n_total == 5000 else index.shards)


def test_streamed_build_errors() -> None:
    vectors, ids = random_items(14, 40, 4)
    with pytest.raises(InputError, match="pass n_total"):
        FaissIndex("flat", shards=2).build_from_batches(in_batches(vectors, ids, 10))
    with pytest.raises(InputError, match="at least one item"):
        FaissIndex("flat").build_from_batches([])
    with pytest.raises(InputError, match="duplicate"):
        FaissIndex("flat").build_from_batches([(vectors[:5], ids[:5]), (vectors[:5], ids[:5])])
    with pytest.raises(InputError, match="dimension"):
        ExactIndex().build_from_batches([(vectors, ids), (vectors[:, :2], ids + 1000)])
    with pytest.raises(InputError, match="shards"):
        FaissIndex("flat", shards=0)
