"""rechub_core.schema: what a prepared data set offers to models (columns, vocabularies, L),
saved with every run, and the feature declarations built from it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rechub_core.features import SequenceFeature, SparseFeature
from rechub_core.preprocess import PreparedData
from rechub_core.schema import HISTORY, ITEM_ID, MIN_ROWS_FOR_USER_ID, USER_ID, DataSchema

columns = st.lists(st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True), max_size=3, unique=True)


@st.composite
def schemas(draw: st.DrawFn) -> DataSchema:
    user_cols = draw(columns.map(lambda cs: [f"u_{c}" for c in cs]))
    item_cols = draw(columns.map(lambda cs: [f"i_{c}" for c in cs]))
    sizes = st.integers(2, 10**6)
    vocab = {name: draw(sizes) for name in [USER_ID, ITEM_ID, *user_cols, *item_cols]}
    vocab[HISTORY] = vocab[ITEM_ID]
    return DataSchema(vocab, tuple(user_cols), tuple(item_cols), draw(st.integers(1, 500)))


def test_from_prepared_takes_the_data_sets_columns(synthetic: PreparedData) -> None:
    schema = DataSchema.from_prepared(synthetic)
    assert schema.vocab == synthetic.vocab
    assert schema.vocab is not synthetic.vocab  # a copy: the schema is frozen
    assert (schema.user_columns, schema.item_columns) == (
        synthetic.user_columns,
        synthetic.item_columns,
    )
    assert schema.max_len == synthetic.max_len == 20
    assert schema.n_items == synthetic.n_items == schema.vocab[ITEM_ID] - 1


@given(schemas())
def test_to_dict_is_json_and_from_dict_inverts_it(schema: DataSchema) -> None:
    saved = json.loads(json.dumps(schema.to_dict()))  # what a run folder holds
    assert DataSchema.from_dict(saved) == schema


def test_from_dict_fills_what_an_older_run_did_not_save() -> None:
    schema = DataSchema.from_dict({"vocab": {USER_ID: 4, ITEM_ID: 9}})
    assert (schema.user_columns, schema.item_columns, schema.max_len) == ((), (), 50)
    assert schema.n_items == 8


@given(schemas(), st.integers(1, 64))
def test_feature_helpers_declare_one_feature_per_column(schema: DataSchema, dim: int) -> None:
    assert schema.item_id(dim) == SparseFeature(ITEM_ID, schema.vocab[ITEM_ID], dim)
    assert schema.user_id(dim) == SparseFeature(USER_ID, schema.vocab[USER_ID], dim)
    profile, side = schema.user_profile(dim), schema.item_side(dim)
    assert [f.name for f in profile] == list(schema.user_columns)
    assert [f.name for f in side] == list(schema.item_columns)
    assert all(f.vocab_size == schema.vocab[f.name] and f.embed_dim == dim for f in profile + side)
    assert schema.item_with_side(dim) == [schema.item_id(dim), *side]


def test_history_shares_the_item_table_unless_told_not_to() -> None:
    schema = DataSchema({USER_ID: 5, ITEM_ID: 12, HISTORY: 12}, max_len=7)
    history = schema.history(8)
    assert isinstance(history, SequenceFeature)
    assert (history.name, history.vocab_size, history.embed_dim) == (HISTORY, 12, 8)
    assert (history.pooling, history.shared_with) == ("mean", ITEM_ID)
    own = schema.history(8, pooling=None, shared=False)
    assert (own.pooling, own.shared_with) == (None, None)


@pytest.mark.parametrize(
    ("users", "rows", "with_id"),
    [(100, 0, True), (100, 2_000, True), (100, 1_999, False), (30_000, 200_000, False)],
)
def test_user_id_embedded_only_with_enough_rows_per_user(
    users: int, rows: int, with_id: bool
) -> None:
    """MIN_ROWS_FOR_USER_ID (20) training rows per user on average; unknown (0) keeps the id."""
    schema = DataSchema({USER_ID: users + 1, ITEM_ID: 12, HISTORY: 12}, train_rows=rows)
    assert MIN_ROWS_FOR_USER_ID == 20
    assert schema.uses_user_id() is with_id
    names = [f.name for f in schema.pooled_user(8)]
    assert names == ([USER_ID] if with_id else []) + [HISTORY]
    assert next(f.name for f in schema.pooled_user(8, user_id=not with_id)) == (
        HISTORY if with_id else USER_ID
    )


def test_train_rows_round_trips_and_defaults_to_unknown() -> None:
    schema = DataSchema({USER_ID: 5, ITEM_ID: 12, HISTORY: 12}, train_rows=77)
    assert DataSchema.from_dict(schema.to_dict()).train_rows == 77
    old = {k: v for k, v in schema.to_dict().items() if k != "train_rows"}
    assert DataSchema.from_dict(old).train_rows == 0
