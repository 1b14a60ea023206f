"""The sequence-per-line input format (``user item item ...``, time = position)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rechub_core.config import ComponentConfig, DataConfig, RunConfig
from rechub_core.datasets import (
    Interactions,
    default_data_dir,
    is_sequence_file,
    load_sequence_file,
    write_sequence_file,
)
from rechub_core.errors import InputError
from rechub_core.preprocess import prepare
from rechub_core.runs import load_interactions

TOYS = default_data_dir() / "amazon-s3rec"


def _sequences(events: pd.DataFrame) -> dict[object, list[object]]:
    ev = events.sort_values(["user_id", "timestamp"], kind="stable")
    return {u: list(g["item_id"]) for u, g in ev.groupby("user_id", sort=True)}


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.integers(1, 10_000),
        st.lists(st.integers(1, 50), min_size=1, max_size=12),
        min_size=1,
        max_size=20,
    )
)
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, seqs: dict[int, list[int]]) -> None:
    path = tmp_path_factory.mktemp("seq") / "data.txt"
    path.write_text("".join(f"{u} {' '.join(map(str, s))}\n" for u, s in seqs.items()))
    loaded = load_sequence_file(path)
    assert _sequences(loaded.events) == {u: s for u, s in sorted(seqs.items())}
    # the time is the position in the line
    for u, s in seqs.items():
        ts = loaded.events.loc[loaded.events["user_id"] == u, "timestamp"].to_numpy()
        assert ts.tolist() == list(range(len(s)))
    again = load_sequence_file(write_sequence_file(loaded, path.with_name("again.txt")))
    assert _sequences(again.events) == _sequences(loaded.events)


def test_string_ids_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("alice a b c\n\nbob c a\n")
    ev = load_sequence_file(path).events
    assert ev["user_id"].tolist() == ["alice"] * 3 + ["bob"] * 2
    assert ev["item_id"].tolist() == ["a", "b", "c", "c", "a"]
    assert ev["timestamp"].tolist() == [0, 1, 2, 0, 1]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("1 2 3\n2\n", 2, "at least one item"),
        ("1 2 3\n\n\n7\n", 4, "at least one item"),
        ("1 2 3\n2 3 4\n1 5 6\n", 3, "already has a sequence on line 1"),
    ],
)
def test_malformed_lines_name_the_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"line {line}\b.*{what}"):
        load_sequence_file(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_sequence_file(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(InputError, match="no sequences"):
        load_sequence_file(tmp_path / "empty.txt")


def test_users_below_five_items_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("1 1 2 3 4 5\n2 1 2 3 4\n3 5 4 3 2 1 6\n4 7\n")
    data = prepare(load_sequence_file(path), max_len=10, min_interactions=5)
    kept = set(data.encoders["user_id"].classes.tolist())
    assert kept == {1, 3}
    # the last item of the line is the test target, the one before it the validation target
    items = data.encoders["item_id"]
    assert sorted(items.inverse(np.asarray(data.test.target)).tolist()) == [5, 6]
    assert sorted(items.inverse(np.asarray(data.val.target)).tolist()) == [1, 4]


def test_run_config_reads_txt_as_sequences(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("1 1 2 3 4 5\n")
    assert is_sequence_file(path) and not is_sequence_file(tmp_path / "x.csv")
    loaded = load_interactions(
        RunConfig(model=ComponentConfig("SASRec"), data=DataConfig(str(path)))
    )
    assert isinstance(loaded, Interactions)
    assert loaded.events["item_id"].tolist() == [1, 2, 3, 4, 5]


@pytest.mark.skipif(
    not (TOYS / "Toys_and_Games.txt").exists(), reason=f"{TOYS} is absent (set RECHUB_DATA_DIR)"
)
def test_toys_counts() -> None:
    ev = load_sequence_file(TOYS / "Toys_and_Games.txt").events
    assert (len(ev), ev["user_id"].nunique(), ev["item_id"].nunique()) == (167_597, 19_412, 11_924)


def test_ids_are_int_only_when_plain(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("1 3 0003 4\n")
    ev = load_sequence_file(path).events
    assert ev["item_id"].tolist() == ["3", "0003", "4"]  # '0003' and '3' stay two items
    path.write_text("1 3 4 99999999999999999999999\n")
    assert load_sequence_file(path).events["item_id"].tolist()[-1] == "99999999999999999999999"
