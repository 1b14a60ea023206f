"""rechub_core.data: columns as tensors, the batch loader (shuffling, shards, item lookups) and
the seed-compatible MatchDataGenerator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rechub_core.data import BatchLoader, MatchDataGenerator, as_tensor, to_tensor_dict
from rechub_core.errors import InputError


def test_columns_become_int64_or_float32_tensors() -> None:
    assert as_tensor("a", np.array([1, 2], dtype=np.int32)).dtype == torch.int64
    assert as_tensor("b", pd.Series([0.5, 1.5])).dtype == torch.float32
    assert as_tensor("c", np.array([True, False])).tolist() == [1.0, 0.0]
    ragged = pd.Series([np.array([1, 2]), np.array([3])], dtype=object)
    with pytest.raises(InputError, match=r"'hist'.*different lengths.*pad"):
        as_tensor("hist", ragged)
    with pytest.raises(InputError, match=r"'user_id'.*encode raw ids.*IdEncoder"):
        as_tensor("user_id", np.array(["u1", "u2"]))
    frame = to_tensor_dict(pd.DataFrame({"x": [1, 2, 3], "y": [0.1, 0.2, 0.3]}))
    assert {k: tuple(v.shape) for k, v in frame.items()} == {"x": (3,), "y": (3,)}
    with pytest.raises(InputError, match="different numbers of rows"):
        to_tensor_dict({"x": [1, 2, 3], "y": [1, 2]})


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    batch=st.integers(1, 17),
    seed=st.integers(0, 5),
    world=st.integers(1, 3),
)
def test_an_epoch_visits_every_row_once_and_shards_split_it(
    n: int, batch: int, seed: int, world: int
) -> None:
    """Shuffled epochs are permutations (seeded, new each epoch); W shards of one epoch cover
    every row and run the same number of steps."""
    loader = BatchLoader({"row": np.arange(n)}, batch, shuffle=True, seed=seed)
    first = torch.cat([b["row"] for b in loader])
    assert sorted(first.tolist()) == list(range(n))
    assert len(loader) == -(-n // batch)
    again = BatchLoader({"row": np.arange(n)}, batch, shuffle=True, seed=seed)
    assert torch.equal(torch.cat([b["row"] for b in again]), first)  # same seed, same order
    shards = [loader.shard(r, world) for r in range(world)]
    for s in shards:
        s.set_epoch(1)
    rows = [torch.cat([b["row"] for b in s]) for s in shards]
    assert len({len(s) for s in shards}) == 1
    assert set(torch.cat(rows).tolist()) == set(range(n))


def test_item_lookups_and_a_bad_batch_size() -> None:
    items = {"item_id": np.arange(5), "cat": np.array([0, 1, 1, 2, 2])}
    loader = BatchLoader({"user_id": np.arange(3)}, 2, item_table=items)
    assert loader.n_items == 5
    assert loader.item_batch(torch.tensor([4, 1]))["cat"].tolist() == [2, 1]
    with pytest.raises(InputError, match="batch_size must be positive"):
        BatchLoader({"x": [1]}, 0)


def test_match_data_generator_checks_the_item_table_and_labels() -> None:
    x = {"user_id": np.array([1, 2, 2]), "item_id": np.array([1, 3, 3])}
    items = {"item_id": np.arange(4)}
    train, test, item_dl = MatchDataGenerator(x).generate_dataloader(
        {"user_id": np.array([1, 2])}, items, batch_size=2
    )
    assert train.shuffle and not test.shuffle and item_dl.n_rows == 4
    assert train.item_counts is not None and train.item_counts.tolist() == [0, 1, 0, 2]
    with pytest.raises(InputError, match=r"x_all_item\['item_id'\] must be 0\.\.3 in order"):
        MatchDataGenerator(x).generate_dataloader(x, {"item_id": np.array([0, 2, 1, 3])}, 2)
    with pytest.raises(InputError, match="y has 2 labels for 3 rows"):
        MatchDataGenerator(x, y=[1, 0])
    labelled = MatchDataGenerator(x, y=[1, 0, 1]).x["label"]
    assert labelled.dtype == torch.float32 and labelled.tolist() == [1.0, 0.0, 1.0]
