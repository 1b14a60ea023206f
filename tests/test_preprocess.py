"""The evaluation protocol, encoders and vectorised helpers of rechub_core.preprocess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rechub_core.datasets import (
    Interactions,
    find_movielens_100k,
    load_movielens_100k,
)
from rechub_core.errors import InputError
from rechub_core.preprocess import (
    UNKNOWN,
    EvalSplit,
    IdEncoder,
    group_indptr,
    prepare,
    segments_to_csr,
    trailing_windows,
    user_time_item_order,
)
from rechub_core.synthetic import synthetic_interactions


def _events(rows: list[tuple[object, object, int]]) -> Interactions:
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Interactions(events=df, users=None, items=None, name="hand")


def _rank_of_target(split: EvalSplit, scores: np.ndarray) -> np.ndarray:
    """0-based rank of each target under full ranking: seen and padding masked, ties by id.

    ``scores``: (n_items+1,) shared by all users, or (U, n_items+1).
    """
    n_users = len(split.target)
    s = np.array(np.broadcast_to(scores, (n_users, scores.shape[-1])), dtype=np.float64)
    s[:, 0] = -np.inf
    rows = np.repeat(np.arange(n_users), np.diff(split.seen_indptr))
    s[rows, split.seen_indices] = -np.inf
    t = s[np.arange(n_users), split.target][:, None]
    ids = np.arange(s.shape[1])[None, :]
    return (s > t).sum(1) + ((s == t) & (ids < split.target[:, None])).sum(1)


def _ndcg_hr(rank: np.ndarray, k: int) -> tuple[float, float]:
    hit = rank < k
    return float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean()), float(hit.mean())


# --------------------------------------------------------------------------- IdEncoder

ids_strategy = st.one_of(
    st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=40),
    st.lists(st.text(min_size=0, max_size=6), min_size=1, max_size=40),
)


@settings(max_examples=60, deadline=None)
@given(ids_strategy)
def test_id_encoder_round_trip_and_padding(values: list[Any]) -> None:
    enc = IdEncoder("item_id").fit(values)
    uniq = set(values)
    assert len(enc) == len(uniq) + 1
    codes = enc.transform(values)
    assert codes.dtype == np.int64 and codes.shape == (len(values),)
    assert codes.min() >= 1 and codes.max() == len(uniq)  # 0 is never assigned
    assert list(enc.inverse(codes)) == values
    # codes follow the raw-id order
    order = sorted(uniq)
    assert list(enc.transform(order)) == list(range(1, len(order) + 1))
    # JSON round trip keeps the types of raw ids
    back = IdEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert back.name == "item_id"
    decoded = back.inverse(back.transform(values)).tolist()
    assert decoded == values and [type(v) for v in decoded] == [type(v) for v in values]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=20), st.integers(51, 100))
def test_id_encoder_unknown_raises_naming_field(values: list[int], unknown: int) -> None:
    enc = IdEncoder("movie").fit(values)
    with pytest.raises(InputError, match=rf"'movie'.*{unknown}"):
        enc.transform([values[0], unknown])


def test_id_encoder_inverse_rejects_padding_and_save_load(tmp_path: Path) -> None:
    enc = IdEncoder("user_id").fit(["b", "a", "c", "a"])
    assert list(enc.transform(["a", "b", "c"])) == [1, 2, 3]
    with pytest.raises(InputError, match="padding"):
        enc.inverse([0, 1])
    with pytest.raises(InputError, match="user_id"):
        enc.inverse([4])
    path = tmp_path / "sub" / "enc.json"
    enc.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["enc.json"]  # no temp file left
    loaded = IdEncoder.load(path)
    assert loaded.name == "user_id" and list(loaded.classes) == ["a", "b", "c"]
    ints = IdEncoder("item_id").fit(np.array([30, 10, 20], dtype=np.int64))
    assert ints.to_dict() == {"name": "item_id", "id_type": "int64", "values": [10, 20, 30]}
    with pytest.raises(InputError, match="NaN"):
        IdEncoder("x").fit([1.0, float("nan")])


# --------------------------------------------------------------------------- helpers


def test_trailing_windows_exact() -> None:
    values = np.array([1, 2, 3, 4, 5, 6])
    out = trailing_windows(values, np.array([0, 0, 2, 3]), np.array([0, 3, 6, 4]), max_len=2)
    assert out.tolist() == [[0, 0], [2, 3], [5, 6], [4, 0]]
    assert trailing_windows(values, np.array([0]), np.array([3]), 4, pad=-1).tolist() == [
        [1, 2, 3, -1]
    ]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(1, 99), max_size=12),
    bounds=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=6),
    max_len=st.integers(1, 5),
    pad=st.sampled_from([0, -1]),
)
def test_trailing_windows_match_a_plain_loop(values, bounds, max_len, pad) -> None:
    arr = np.array(values, dtype=np.int64)
    starts = np.array([min(a, len(values)) for a, _ in bounds])
    ends = np.array([max(min(b, len(values)), s) for (_, b), s in zip(bounds, starts, strict=True)])
    out = trailing_windows(arr, starts, ends, max_len, pad=pad)
    assert out.shape == (len(bounds), max_len)
    for row, (s, e) in enumerate(zip(starts, ends, strict=True)):
        recent = values[s:e][-max_len:]
        assert out[row].tolist() == recent + [pad] * (max_len - len(recent))


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(1, 4), st.integers(-3, 3), st.integers(1, 5)), max_size=30),
    kind=st.sampled_from(["int", "wide_int", "float", "datetime"]),
)
def test_user_time_item_order_equals_lexsort(rows, kind) -> None:
    """The one-key sort gives exactly the stable three-key lexsort, for every time type."""
    users = np.array([r[0] for r in rows], dtype=np.int64)
    items = np.array([r[2] for r in rows], dtype=np.int64)
    raw = np.array([r[1] for r in rows], dtype=np.int64)
    times: np.ndarray = {
        "int": raw,
        "wide_int": raw * (2**60 // 8),  # a span too wide for one int64 key: ranks
        "float": raw / 3.0,
        "datetime": (raw + 1_700_000_000).astype("datetime64[s]"),
    }[kind]
    got = user_time_item_order(users, times, items, n_users=4, n_items=5)
    expected = np.lexsort((items, times, users))
    assert got.tolist() == expected.tolist()


def test_segments_to_csr_and_group_indptr() -> None:
    values = np.array([5, 3, 5, 1, 9, 9])
    indptr, indices = segments_to_csr(values, np.array([0, 3, 6]), np.array([3, 6, 6]))
    assert indptr.tolist() == [0, 2, 4, 4]
    assert indices.tolist() == [3, 5, 1, 9]
    raw_ptr, raw = segments_to_csr(values, np.array([0]), np.array([3]), unique=False)
    assert raw_ptr.tolist() == [0, 3] and raw.tolist() == [5, 3, 5]
    assert group_indptr(np.array([0, 0, 2, 2, 2]), 4).tolist() == [0, 2, 2, 5, 5]


# --------------------------------------------------------------------------- the protocol


def _hand_made() -> Interactions:
    rows: list[tuple[object, object, int]] = [
        # u1: timestamp ties decide the order by raw item id: 30 | 10, 20 | 5, 7
        ("u1", 7, 3),
        ("u1", 30, 1),
        ("u1", 20, 2),
        ("u1", 5, 3),
        ("u1", 10, 2),
        # u2: 4 interactions -> dropped with min_interactions=5
        ("u2", 1, 1),
        ("u2", 2, 2),
        ("u2", 3, 3),
        ("u2", 4, 4),
        # u3: 6 interactions, distinct timestamps (given out of order)
        ("u3", 40, 60),
        ("u3", 10, 10),
        ("u3", 20, 20),
        ("u3", 30, 30),
        ("u3", 50, 50),
        ("u3", 7, 40),
    ]
    inter = _events(rows)
    users = pd.DataFrame({"gender": ["F", None, "M"]}, index=pd.Index(["u1", "u2", "u3"]))
    items = pd.DataFrame(
        {"title": ["ten", "twenty", "thirty"], "category": ["x", "y", "x"]},
        index=pd.Index([10, 20, 30]),
    )
    return Interactions(events=inter.events, users=users, items=items, name="hand")


def test_leave_one_out_with_ties_and_min_interactions() -> None:
    data = prepare(_hand_made(), max_len=2, min_interactions=5)
    uenc, ienc = data.encoders["user_id"], data.encoders["item_id"]
    assert list(uenc.classes) == ["u1", "u3"]  # u2 dropped
    # items from all kept events (u2's items 1..4 are gone), codes in raw-id order
    assert list(ienc.classes) == [5, 7, 10, 20, 30, 40, 50]
    assert data.n_items == 7 and data.vocab["item_id"] == 8 == data.vocab["hist_item_id"]

    def dec(codes: np.ndarray) -> list[object]:
        return [ienc.inverse([c])[0] if c else 0 for c in codes.reshape(-1)]

    assert uenc.inverse(data.test.users["user_id"]).tolist() == ["u1", "u3"]
    assert dec(data.test.target) == [7, 40]
    assert dec(data.val.target) == [5, 50]
    # training sequences, windows of L + 1 = 3 stepping back by L = 2: u1 = 30, 10, 20 fits one;
    # u3 = 10, 20, 30, 7 needs two, sharing item 20, so every target (20, 30, 7) appears once
    assert [dec(r) for r in data.train_sequences["seq_item_id"]] == [
        [30, 10, 20],
        [20, 30, 7],
        [10, 20, 0],
    ]
    assert uenc.inverse(data.train_sequences["user_id"]).tolist() == ["u1", "u3", "u3"]
    # training samples: right padded, truncation keeps the most recent
    assert dec(data.train["item_id"]) == [10, 20, 20, 30, 7]
    assert [dec(r) for r in data.train["hist_item_id"]] == [
        [30, 0],
        [30, 10],
        [10, 0],
        [10, 20],
        [20, 30],
    ]
    assert uenc.inverse(data.train["user_id"]).tolist() == ["u1", "u1", "u3", "u3", "u3"]
    # val history = last <= L training items; test history adds the validation item
    assert [dec(r) for r in data.val.users["hist_item_id"]] == [[10, 20], [30, 7]]
    assert [dec(r) for r in data.test.users["hist_item_id"]] == [[20, 5], [7, 50]]
    # seen CSR, sorted by code: all training items (+ validation item for test)
    assert data.val.seen_indptr.tolist() == [0, 3, 7]
    assert dec(data.val.seen_indices) == [10, 20, 30, 7, 10, 20, 30]
    assert data.test.seen_indptr.tolist() == [0, 4, 9]
    assert dec(data.test.seen_indices) == [5, 10, 20, 30, 7, 10, 20, 30, 50]
    assert dec(data.test.seen(1)) == [7, 10, 20, 30, 50]
    # training counts exclude validation and test items
    counts = dict(zip(ienc.classes.tolist(), data.item_counts[1:].tolist(), strict=True))
    assert counts == {5: 0, 7: 1, 10: 2, 20: 2, 30: 2, 40: 0, 50: 0}
    assert data.item_counts[0] == 0
    for arr in [*data.train.values(), data.val.target, data.test.seen_indices]:
        assert arr.dtype == np.int64


def test_side_columns_unknown_is_its_own_category() -> None:
    data = prepare(_hand_made(), max_len=2, min_interactions=5)
    assert data.user_columns == ("gender",) and data.item_columns == ("category",)
    genc, cenc = data.encoders["gender"], data.encoders["category"]
    assert genc.inverse(data.test.users["gender"]).tolist() == ["F", "M"]
    # items 5, 7, 40, 50 have no metadata -> UNKNOWN (a real code, not padding 0)
    cat = data.items["category"]
    assert cat[0] == 0 and (cat[1:] > 0).all()
    assert cenc.inverse(cat[1:]).tolist() == [UNKNOWN, UNKNOWN, "x", "y", "x", UNKNOWN, UNKNOWN]
    assert data.vocab["category"] == 4  # pad, x, y, unknown
    assert data.items["item_id"].tolist() == list(range(8))
    np.testing.assert_array_equal(data.train["category"], cat[data.train["item_id"]])
    assert data.item_titles is not None
    assert data.item_titles.tolist() == ["", "", "", "ten", "twenty", "thirty", "", ""]
    # an unknown user profile value is also its own category
    users = pd.DataFrame({"gender": ["F", np.nan]}, index=pd.Index(["u1", "u3"]))
    inter = _hand_made()
    d2 = prepare(Interactions(inter.events, users, None, "h"), max_len=2)
    assert d2.encoders["gender"].inverse(d2.test.users["gender"]).tolist() == ["F", UNKNOWN]
    assert list(d2.items) == ["item_id"] and d2.item_titles is None


def test_prepare_rejects_bad_input() -> None:
    inter = _hand_made()
    with pytest.raises(InputError, match="timestamp"):
        prepare(Interactions(inter.events.drop(columns="timestamp"), None, None, "x"))
    bad = inter.events.astype({"item_id": float})
    bad.loc[3, "item_id"] = np.nan
    with pytest.raises(InputError, match="item_id"):
        prepare(Interactions(bad, None, None, "x"))
    with pytest.raises(InputError, match="min_interactions"):
        prepare(inter, min_interactions=50)
    with pytest.raises(InputError, match="min_interactions"):
        prepare(inter, min_interactions=2)


events_strategy = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 12), st.integers(0, 6)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(events_strategy, st.integers(1, 6), st.integers(3, 6))
def test_windows_match_reference(
    rows: list[tuple[int, int, int]], max_len: int, min_inter: int
) -> None:
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    df["user_id"] = "u" + df["user_id"].astype(str)  # string user ids, int item ids
    counts = df["user_id"].value_counts()
    if (counts >= min_inter).sum() == 0:
        with pytest.raises(InputError):
            prepare(Interactions(df, None, None, "p"), max_len=max_len, min_interactions=min_inter)
        return
    data = prepare(Interactions(df, None, None, "p"), max_len=max_len, min_interactions=min_inter)
    ienc, uenc = data.encoders["item_id"], data.encoders["user_id"]
    ordered = df[df["user_id"].map(counts) >= min_inter].sort_values(
        ["user_id", "timestamp", "item_id"], kind="stable"
    )
    exp_hist, exp_target, exp_user = [], [], []
    for user, grp in ordered.groupby("user_id", sort=True):
        seq = grp["item_id"].tolist()
        train = seq[:-2]
        for j in range(1, len(train)):
            hist = train[max(0, j - max_len) : j]
            exp_hist.append(hist + [0] * (max_len - len(hist)))
            exp_target.append(train[j])
            exp_user.append(user)
    hist = data.train["hist_item_id"]
    assert hist.shape == (len(exp_target), max_len)
    decoded = [[int(ienc.inverse([c])[0]) if c else 0 for c in r] for r in hist]
    assert decoded == exp_hist
    assert ienc.inverse(data.train["item_id"]).tolist() == exp_target
    assert uenc.inverse(data.train["user_id"]).tolist() == exp_user
    # the property itself: every non-pad history item precedes the target in the user's order,
    # pads only on the right, and the history length is min(j, L)
    pos_in_user = {}
    for user, grp in ordered.groupby("user_id", sort=True):
        pos_in_user[user] = grp["item_id"].tolist()
    j_of_sample: dict[str, int] = {}
    for r in range(len(exp_target)):
        user = exp_user[r]
        j = j_of_sample.get(user, 0) + 1
        j_of_sample[user] = j
        length = int((hist[r] > 0).sum())
        assert length == min(j, max_len) and (hist[r, :length] > 0).all()
        seq = pos_in_user[user]
        assert decoded[r][:length] == seq[j - length : j]
    # every kept user: val/test targets are the last two items; seen == training set
    for row, (_user, grp) in enumerate(ordered.groupby("user_id", sort=True)):
        seq = grp["item_id"].tolist()
        assert ienc.inverse([data.test.target[row]])[0] == seq[-1]
        assert ienc.inverse([data.val.target[row]])[0] == seq[-2]
        assert sorted(ienc.inverse(data.val.seen(row)).tolist()) == sorted(set(seq[:-2]))
        assert sorted(ienc.inverse(data.test.seen(row)).tolist()) == sorted(set(seq[:-1]))


# --------------------------------------------------------------------------- synthetic data


def test_synthetic_transition_baseline_beats_most_popular() -> None:
    data = prepare(synthetic_interactions(seed=3), max_len=20)
    n = data.vocab["item_id"]
    seq = data.train_sequences["seq_item_id"]
    prev, nxt = seq[:, :-1].ravel(), seq[:, 1:].ravel()
    ok = (prev > 0) & (nxt > 0)
    trans = np.zeros((n, n))
    np.add.at(trans, (prev[ok], nxt[ok]), 1.0)
    hist = data.test.users["hist_item_id"]
    last = hist[np.arange(len(hist)), (hist > 0).sum(1) - 1]
    # scores: transition counts from the last item, popularity as a small tie-breaker
    trans_scores = trans[last] + 1e-3 * data.item_counts[None, :] / max(data.item_counts.max(), 1)
    pop_ndcg, pop_hr = _ndcg_hr(_rank_of_target(data.test, data.item_counts), 10)
    trans_ndcg, trans_hr = _ndcg_hr(_rank_of_target(data.test, trans_scores), 10)
    assert trans_ndcg > 3 * pop_ndcg and trans_ndcg > 0.15
    assert trans_hr > 2 * pop_hr


# --------------------------------------------------------------------------- MovieLens-100K


def test_movielens_most_pop_reference_numbers() -> None:
    data_dir = find_movielens_100k()
    if data_dir is None:
        pytest.skip(
            "MovieLens-100K not found: set RECHUB_DATA_DIR to the folder holding ml-100k/ "
            "(default ../shared/data relative to the repo root)"
        )
    data = prepare(load_movielens_100k(data_dir), max_len=50, min_interactions=5)
    assert data.n_users == 943 and data.n_items == 1682
    assert len(data.train["item_id"]) == 100_000 - 3 * 943  # each user's first item: no sample
    assert int(data.item_counts.sum()) == 100_000 - 2 * 943
    rank = _rank_of_target(data.test, data.item_counts)
    ndcg10, _ = _ndcg_hr(rank, 10)
    _, hr50 = _ndcg_hr(rank, 50)
    assert ndcg10 == pytest.approx(0.0254, abs=0.002)
    assert hr50 == pytest.approx(0.141, abs=0.002)


@pytest.mark.parametrize("max_len", [1, 3, 20])
def test_sequence_windows_cover_every_training_target_once(max_len: int) -> None:
    data = prepare(synthetic_interactions(n_users=80, n_items=60, seed=5), max_len=max_len)
    seq = data.train_sequences["seq_item_id"]
    assert seq.shape[1] == max_len + 1
    keep = (seq[:, 1:] != 0) & (seq[:, :-1] != 0)
    users = np.repeat(data.train_sequences["user_id"], max_len).reshape(seq[:, 1:].shape)
    from_windows = sorted(zip(users[keep].tolist(), seq[:, 1:][keep].tolist(), strict=True))
    from_rows = sorted(
        zip(data.train["user_id"].tolist(), data.train["item_id"].tolist(), strict=True)
    )
    assert from_windows == from_rows
