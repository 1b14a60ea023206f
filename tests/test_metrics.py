"""Properties of the full-ranking metrics (rechub_core.metrics)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rechub_core.errors import InputError
from rechub_core.metrics import (
    DEFAULT_KS,
    format_metrics,
    full_ranking_metrics,
    most_popular_metrics,
    ranking_metrics,
    target_ranks,
    topk_hits,
)

SETTINGS = settings(max_examples=60, deadline=None)
NAMES = ("recall", "precision", "ndcg", "hit", "mrr")


# --------------------------------------------------------------------------- references


def reference_single_target(ranks: np.ndarray, ks: list[int]) -> dict[str, float]:
    """Closed forms for one target per user at 0-based ``ranks``."""
    out = {}
    for k in ks:
        within = ranks < k
        out[f"recall@{k}"] = within.mean()
        out[f"precision@{k}"] = (within / k).mean()
        out[f"ndcg@{k}"] = np.where(within, 1.0 / np.log2(ranks + 2.0), 0.0).mean()
        out[f"hit@{k}"] = within.mean()
        out[f"mrr@{k}"] = np.where(within, 1.0 / (ranks + 1.0), 0.0).mean()
    return out


def reference_ranks(
    users: np.ndarray,
    items: np.ndarray,
    targets: np.ndarray,
    seen: list[list[int]],
    pessimistic: bool = False,
) -> np.ndarray:
    """Brute force, one user at a time: count unmasked items scoring strictly higher (or, when
    ``pessimistic``, higher or equal, the target itself excluded)."""
    ranks = []
    for u, t, s in zip(users, targets, seen, strict=True):
        q = u if u.ndim == 2 else u[None, :]
        scores = (q.astype(np.float64) @ items.T.astype(np.float64)).max(axis=0)
        masked = np.zeros(items.shape[0], dtype=bool)
        masked[0] = True
        masked[list(s)] = True
        masked[t] = False  # a seen target is still ranked
        above = scores >= scores[t] if pessimistic else scores > scores[t]
        above[t] = False
        ranks.append(int((above & ~masked).sum()))
    return np.array(ranks)


def to_csr(seen: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    indptr = np.zeros(len(seen) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(s) for s in seen])
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in seen]) if seen else []
    return torch.from_numpy(indptr), torch.as_tensor(flat, dtype=torch.long)


def random_problem(seed: int, n_users: int, n_items: int, dim: int, interests: int):
    """Small-integer vectors, so float32 arithmetic is exact and ties are frequent."""
    rng = np.random.default_rng(seed)
    shape = (n_users, dim) if interests == 0 else (n_users, interests, dim)
    users = rng.integers(-3, 4, size=shape).astype(np.float32)
    items = rng.integers(-3, 4, size=(n_items + 1, dim)).astype(np.float32)
    items[0] = 100.0  # padding: would win every ranking if it were not masked
    targets = rng.integers(1, n_items + 1, size=n_users)
    seen = [
        sorted(rng.choice(n_items + 1, size=rng.integers(0, n_items + 1), replace=False).tolist())
        for _ in range(n_users)
    ]
    for u in range(n_users):  # sometimes list the target itself among the seen items
        if rng.random() < 0.3 and targets[u] not in seen[u]:
            seen[u].append(int(targets[u]))
    return users, items, targets, seen


def random_hits(seed: int, n_users: int, kmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    hits = rng.random((n_users, kmax)) < rng.random()
    n_rel = hits.sum(axis=1) + rng.integers(0, 4, size=n_users)
    n_rel = np.maximum(n_rel, 1)
    return torch.from_numpy(hits), torch.from_numpy(n_rel)


problems = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(1, 12),  # users
    st.integers(1, 40),  # items
    st.integers(1, 4),  # dim
    st.integers(0, 3),  # interests (0 = single vector)
)
ks_strategy = st.lists(st.integers(1, 50), min_size=1, max_size=4, unique=True)


# --------------------------------------------------------------------------- ranking_metrics


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.integers(1, 30), st.data())
def test_metrics_lie_in_unit_interval(seed: int, n_users: int, kmax: int, data) -> None:
    hits, n_rel = random_hits(seed, n_users, kmax)
    ks = data.draw(st.lists(st.integers(1, kmax), min_size=1, max_size=5, unique=True))
    m = ranking_metrics(hits, n_rel, ks)
    assert set(m) == {f"{name}@{k}" for k in ks for name in NAMES}
    for key, value in m.items():
        assert isinstance(value, float), key
        assert -1e-12 <= value <= 1 + 1e-12, (key, value)


@SETTINGS
@given(st.integers(1, 10), st.integers(0, 20))
def test_perfect_ranking_scores_one(n_relevant: int, extra: int) -> None:
    kmax = n_relevant + extra
    hits = torch.zeros(3, kmax, dtype=torch.bool)
    hits[:, :n_relevant] = True
    n_rel = torch.full((3,), n_relevant)
    ks = list(range(n_relevant, kmax + 1))
    m = ranking_metrics(hits, n_rel, ks)
    for k in ks:
        for name in ("hit", "recall", "ndcg", "mrr"):
            assert m[f"{name}@{k}"] == pytest.approx(1.0), (name, k)
        assert m[f"precision@{k}"] == pytest.approx(n_relevant / k)


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.integers(1, 30))
def test_recall_hit_monotone_and_precision_is_hits_over_k(
    seed: int, n_users: int, kmax: int
) -> None:
    hits, n_rel = random_hits(seed, n_users, kmax)
    ks = list(range(1, kmax + 1))
    m = ranking_metrics(hits, n_rel, ks)
    h = hits.numpy()
    for k in ks:
        assert m[f"precision@{k}"] == pytest.approx(h[:, :k].sum(axis=1).mean() / k)
        assert m[f"recall@{k}"] == pytest.approx((h[:, :k].sum(axis=1) / n_rel.numpy()).mean())
        if k > 1:
            for name in ("recall", "hit", "mrr"):
                assert m[f"{name}@{k}"] >= m[f"{name}@{k - 1}"] - 1e-12, (name, k)


@SETTINGS
@given(st.lists(st.integers(0, 60), min_size=1, max_size=20))
def test_single_target_ndcg_closed_form_and_monotone(ranks: list[int]) -> None:
    r = np.array(ranks)
    kmax = 60
    hits = torch.from_numpy(r[:, None] == np.arange(kmax)[None, :])
    ks = list(range(1, kmax + 1))
    m = ranking_metrics(hits, torch.ones(len(ranks), dtype=torch.long), ks)
    expected = reference_single_target(r, ks)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key
    for k in ks[1:]:
        assert m[f"ndcg@{k}"] >= m[f"ndcg@{k - 1}"] - 1e-12
    # one user: ndcg@K == 1 / log2(rank + 2) exactly when rank < K
    one = ranking_metrics(hits[:1], torch.ones(1, dtype=torch.long), ks)
    for k in ks:
        want = 1.0 / math.log2(ranks[0] + 2) if ranks[0] < k else 0.0
        assert one[f"ndcg@{k}"] == pytest.approx(want, abs=1e-12)


def test_ndcg_with_several_relevant_items_uses_truncated_idcg() -> None:
    hits = torch.tensor([[False, True, False, True]])
    m = ranking_metrics(hits, torch.tensor([3]), ks=(2, 4))
    disc = [1 / math.log2(r + 2) for r in range(4)]
    assert m["ndcg@2"] == pytest.approx(disc[1] / (disc[0] + disc[1]))
    assert m["ndcg@4"] == pytest.approx((disc[1] + disc[3]) / sum(disc[:3]))
    assert m["mrr@2"] == pytest.approx(0.5)
    assert m["recall@4"] == pytest.approx(2 / 3)


def test_topk_hits() -> None:
    topk = torch.tensor([[5, 3, 9], [1, 2, 3]])
    hits = topk_hits(topk, torch.tensor([3, 7]))
    assert hits.dtype == torch.bool
    assert hits.tolist() == [[False, True, False], [False, False, False]]


# --------------------------------------------------------------------------- full ranking


@SETTINGS
@given(problems, ks_strategy)
def test_full_ranking_matches_brute_force(problem, ks: list[int]) -> None:
    users, items, targets, seen = random_problem(*problem)
    indptr, indices = to_csr(seen)
    ranks = target_ranks(
        torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(targets), indptr, indices
    )
    want_ranks = reference_ranks(users, items, targets, seen)
    np.testing.assert_array_equal(ranks.numpy(), want_ranks)
    args = (torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(targets))
    pessimistic = target_ranks(*args, indptr, indices, ties="pessimistic")
    want = reference_ranks(users, items, targets, seen, pessimistic=True)
    np.testing.assert_array_equal(pessimistic.numpy(), want)
    assert bool((pessimistic >= ranks).all())
    m = full_ranking_metrics(
        torch.from_numpy(users),
        torch.from_numpy(items),
        torch.from_numpy(targets),
        indptr,
        indices,
        ks=ks,
    )
    want = reference_single_target(want_ranks, ks)
    assert m.keys() == want.keys()
    for key in want:
        assert m[key] == pytest.approx(want[key], abs=1e-12), key


@SETTINGS
@given(problems, st.integers(1, 5))
def test_chunking_does_not_change_results(problem, chunk_size: int) -> None:
    users, items, targets, seen = random_problem(*problem)
    indptr, indices = to_csr(seen)
    args = (torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(targets))
    whole = full_ranking_metrics(*args, indptr, indices, ks=(1, 5, 10))
    chunked = full_ranking_metrics(*args, indptr, indices, ks=(1, 5, 10), chunk_size=chunk_size)
    assert whole == chunked


@SETTINGS
@given(problems)
def test_seen_items_never_count_as_hits(problem) -> None:
    """Seen items pushed to the very top of a user's ranking change nothing."""
    users, items, targets, seen = random_problem(*problem)
    ks = (1, 3, 10)
    for u in range(users.shape[0]):
        q = users[u].reshape(-1, users.shape[-1])
        best = q[np.argmax(np.abs(q).sum(axis=1))]  # an interest with a non-zero vector if any
        boosted = items.copy()
        boost = [i for i in seen[u] if i not in (0, int(targets[u]))]
        boosted[boost] = 1e3 * best
        csr = (torch.tensor([0, len(seen[u])]), torch.tensor(seen[u], dtype=torch.long))
        user, target = torch.from_numpy(users[u : u + 1]), torch.from_numpy(targets[u : u + 1])
        with_boost = full_ranking_metrics(user, torch.from_numpy(boosted), target, *csr, ks=ks)
        plain = full_ranking_metrics(user, torch.from_numpy(items), target, *csr, ks=ks)
        assert with_boost == plain


def test_seen_target_is_still_ranked_and_padding_is_never_ranked() -> None:
    users = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[50.0, 0.0], [3.0, 0.0], [2.0, 0.0], [1.0, 0.0]])  # row 0 = padding
    seen_indptr = torch.tensor([0, 2])
    # target 3 is listed as seen, item 1 is seen: only item 2 outranks the target
    m = full_ranking_metrics(users, items, torch.tensor([3]), seen_indptr, torch.tensor([1, 3]))
    assert m["mrr@10"] == pytest.approx(0.5)
    assert m["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_ties_are_resolved_in_the_targets_favour() -> None:
    users = torch.tensor([[1.0]])
    items = torch.tensor([[0.0], [1.0], [1.0], [1.0], [2.0]])
    empty = torch.zeros(0, dtype=torch.long)
    ranks = target_ranks(users, items, torch.tensor([2]), torch.tensor([0, 0]), empty)
    assert ranks.tolist() == [1]  # only item 4 scores strictly higher
    # pessimistic: the tied items 1 and 3 rank above the target too; a seen target likewise
    for seen in (empty, torch.tensor([2])):
        indptr = torch.tensor([0, seen.numel()])
        args = (users, items, torch.tensor([2]), indptr, seen)
        assert target_ranks(*args, ties="pessimistic").tolist() == [3]
    with pytest.raises(InputError, match="ties: expected"):
        target_ranks(users, items, torch.tensor([2]), torch.tensor([0, 0]), empty, ties="mid")


def test_multi_interest_uses_the_best_interest() -> None:
    users = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1 user, 2 interests, dim 2)
    items = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.9], [0.8, 0.0]])
    empty = torch.zeros(0, dtype=torch.long)
    ranks = target_ranks(users, items, torch.tensor([3]), torch.tensor([0, 0]), empty)
    assert ranks.tolist() == [1]  # item 2 (0.9 via interest 2) beats item 3 (0.8)


def test_most_popular_matches_reference() -> None:
    rng = np.random.default_rng(3)
    n_items, n_users = 30, 25
    counts = rng.integers(0, 8, size=n_items + 1)
    counts[0] = 10**6  # padding is never ranked
    targets = rng.integers(1, n_items + 1, size=n_users)
    seen = [
        sorted(rng.choice(np.arange(1, n_items + 1), 5, replace=False).tolist())
        for _ in range(n_users)
    ]
    indptr, indices = to_csr(seen)
    m = most_popular_metrics(counts, targets, indptr.numpy(), indices.numpy(), ks=(1, 5, 10))
    ranks = reference_ranks(np.ones((n_users, 1)), counts[:, None].astype(float), targets, seen)
    want = reference_single_target(ranks, [1, 5, 10])
    for key in want:
        assert m[key] == pytest.approx(want[key], abs=1e-12), key


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 5), min_size=2, max_size=12),
    data=st.data(),
)
def test_most_popular_ranks_equal_the_score_matrix_ranking(counts: list[int], data) -> None:
    """The sort-based MostPop ranking equals ranking a (users x items) matrix of counts: ties
    (few distinct counts), duplicate and padding entries among the seen items, and targets
    listed as seen included."""
    n_rows = len(counts)
    n_users = data.draw(st.integers(1, 6))
    targets = data.draw(st.lists(st.integers(1, n_rows - 1), min_size=n_users, max_size=n_users))
    seen = [data.draw(st.lists(st.integers(0, n_rows - 1), max_size=6)) for _ in range(n_users)]
    indptr = torch.tensor([0, *np.cumsum([len(s) for s in seen]).tolist()])
    indices = torch.tensor([i for s in seen for i in s], dtype=torch.long)
    table = torch.tensor(counts, dtype=torch.float64)[:, None]  # (N + 1, 1)
    users = torch.ones(n_users, 1, dtype=torch.float64)
    want = full_ranking_metrics(users, table, torch.tensor(targets), indptr, indices, ks=(1, 3))
    got = most_popular_metrics(torch.tensor(counts), torch.tensor(targets), indptr, indices, (1, 3))
    assert got == pytest.approx(want, abs=1e-12)


def test_most_popular_names_bad_input() -> None:
    ok = {"seen_indptr": torch.tensor([0, 0]), "seen_indices": torch.zeros(0, dtype=torch.long)}
    with pytest.raises(InputError, match=r"targets: item ids must lie in 1\.\.2"):
        most_popular_metrics(torch.tensor([0, 1, 2]), torch.tensor([3]), **ok)
    with pytest.raises(InputError, match="item_counts: contains NaN"):
        most_popular_metrics(torch.tensor([0, float("nan"), 2]), torch.tensor([1]), **ok)
    with pytest.raises(InputError, match="seen_indptr"):
        most_popular_metrics(
            torch.tensor([0, 1, 2]), torch.tensor([1]), torch.tensor([0]), ok["seen_indices"]
        )


def test_full_ranking_is_fast_on_movielens_100k_sizes() -> None:
    torch.manual_seed(0)
    n_users, n_items, dim = 943, 1682, 64
    users = torch.randn(n_users, dim)
    items = torch.randn(n_items + 1, dim)
    targets = torch.randint(1, n_items + 1, (n_users,))
    lengths = torch.randint(5, 200, (n_users,))
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    indices = torch.randint(1, n_items + 1, (int(indptr[-1]),))
    full_ranking_metrics(users, items, targets, indptr, indices)  # warm up
    start = time.perf_counter()
    m = full_ranking_metrics(users, items, targets, indptr, indices)
    elapsed = time.perf_counter() - start
    assert set(m) == {f"{n}@{k}" for k in DEFAULT_KS for n in NAMES}
    assert elapsed < 2.0, f"full ranking of ML-100K sizes took {elapsed:.3f}s"


# --------------------------------------------------------------------------- errors and formatting


def _valid():
    return dict(
        user_vectors=torch.randn(4, 3),
        item_vectors=torch.randn(6, 3),
        targets=torch.tensor([1, 2, 3, 5]),
        seen_indptr=torch.tensor([0, 1, 1, 2, 2]),
        seen_indices=torch.tensor([4, 2]),
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("targets", torch.tensor([0, 2, 3, 5]), "targets"),
        ("targets", torch.tensor([1, 2, 3, 6]), "1..5"),
        ("targets", torch.tensor([1.0, 2.0, 3.0, 5.0]), "integer"),
        ("targets", torch.tensor([1, 2, 3]), "length 4"),
        ("user_vectors", torch.randn(4, 2), "dims differ"),
        ("user_vectors", torch.randn(4), "user_vectors"),
        ("user_vectors", torch.full((4, 3), float("nan")), "NaN"),
        ("item_vectors", torch.randn(6, 3, 1), "item_vectors"),
        ("item_vectors", torch.randint(0, 3, (6, 3)), "floating"),
        ("seen_indptr", torch.tensor([0, 1, 1, 2]), "seen_indptr"),
        ("seen_indptr", torch.tensor([0, 2, 1, 2, 2]), "non-decreasing"),
        ("seen_indices", torch.tensor([4, 6]), "seen_indices"),
    ],
)
def test_full_ranking_input_errors(field: str, value: torch.Tensor, message: str) -> None:
    kwargs = _valid()
    kwargs[field] = value
    with pytest.raises(InputError, match=message):
        full_ranking_metrics(**kwargs)


def test_other_input_errors() -> None:
    with pytest.raises(InputError, match="ks"):
        full_ranking_metrics(**_valid(), ks=(10, 0))
    with pytest.raises(InputError, match="chunk_size"):
        full_ranking_metrics(**_valid(), chunk_size=0)
    with pytest.raises(InputError, match="exceeds"):
        ranking_metrics(torch.zeros(2, 5, dtype=torch.bool), torch.ones(2, dtype=torch.long), (10,))
    with pytest.raises(InputError, match="bool"):
        ranking_metrics(torch.zeros(2, 5), torch.ones(2, dtype=torch.long), (5,))
    with pytest.raises(InputError, match="more hits"):
        ranking_metrics(torch.ones(1, 5, dtype=torch.bool), torch.ones(1, dtype=torch.long), (5,))
    with pytest.raises(InputError, match="at least one relevant"):
        ranking_metrics(torch.zeros(1, 5, dtype=torch.bool), torch.zeros(1, dtype=torch.long), (5,))


def test_format_metrics_one_line_per_k() -> None:
    m = full_ranking_metrics(**_valid())
    text = format_metrics(m)
    lines = text.splitlines()
    assert len(lines) == len(DEFAULT_KS)
    for line, k in zip(lines, DEFAULT_KS, strict=True):
        assert line.startswith(f"@{k}")
        for name in NAMES:
            assert f"{name} " in line
    assert format_metrics({"recall@5": 0.5, "loss": 1.25}).splitlines() == [
        "@5  recall 0.5000",
        "loss 1.2500",
    ]
