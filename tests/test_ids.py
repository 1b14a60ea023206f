"""Raw ids come back exactly as they were given: read as text, int64 only when a whole column is
canonical int64, never merged ("0003" vs "3") or rounded, and parsed the same way at recall."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rechub_core.cli import make_app
from rechub_core.datasets import load_interactions_file
from rechub_core.ids import int_id, parse_id_column
from rechub_core.preprocess import IdEncoder, prepare

# ids as a user's file may hold them: canonical ints, leading zeros, '+', decimals, exponents,
# ints past int64, unicode and CSV-hostile text (commas, quotes); never empty
_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=8
)
ID = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.integers(0, 10**6).map(lambda i: f"0{i}"),
    st.integers(0, 10**6).map(lambda i: f"+{i}"),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
    _text,
    st.sampled_from(["a,b", '"q"', "NA", "nan", "null", " 3", "3 ", "١٢", "-0", "0"]),
)


def _log(users: list[str], items: list[str], per_user: int = 4) -> pd.DataFrame:
    """Each user meets ``per_user`` items (cyclically), at increasing times."""
    rows = [
        (u, items[(i + j) % len(items)], i * 100 + j)
        for i, u in enumerate(users)
        for j in range(per_user)
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def _expected_type(texts: list[str]) -> str:
    return "int64" if all(int_id(t) is not None for t in texts) else "str"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    users=st.lists(ID, min_size=1, max_size=6, unique=True),
    items=st.lists(ID, min_size=4, max_size=8, unique=True),
)
def test_ids_survive_csv_prepare_save_and_parse(
    users: list[str], items: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("ids") / "log.csv"
    _log(users, items, per_user=len(items)).to_csv(path, index=False)  # every item appears
    inter = load_interactions_file(path)
    data = prepare(inter, max_len=5, min_interactions=3)
    for name, given_ids in (("user_id", users), ("item_id", items)):
        enc = IdEncoder.from_dict(json.loads(json.dumps(data.encoders[name].to_dict())))
        assert enc.id_type == _expected_type(given_ids), (name, given_ids)
        assert len(enc) == len(given_ids) + 1, "two ids were merged"
        decoded = [str(v) for v in enc.classes]
        assert sorted(decoded) == sorted(given_ids)
        # what a user types at recall time is parsed the same way and finds the same id
        for text in given_ids:
            code = enc.transform([enc.parse(text)])[0]
            assert str(enc.inverse([code])[0]) == text


@given(st.lists(st.integers(-(2**63), 2**63 - 1).map(str), min_size=1, max_size=20))
def test_a_canonical_int64_column_is_int64_and_one_odd_value_keeps_all_strings(
    texts: list[str],
) -> None:
    col = parse_id_column(pd.Series(texts, dtype=str))
    assert col.dtype == np.int64 and [str(v) for v in col] == texts
    for odd in ("0" + texts[0].lstrip("-"), "1.0", "+1", str(2**63)):
        mixed = parse_id_column(pd.Series([*texts, odd], dtype=str))
        assert mixed.dtype == object and list(mixed) == [*texts, odd]


TINY = """
[model]
name = "DSSM"
[model.params]
embed_dim = 8
user_params = { dims = [16] }
item_params = { dims = [16] }
[data]
max_len = 5
min_interactions = 3
[train]
epochs = 1
batch_size = 16
"""

KINDS = {
    "leading-zeros": (["0003", "3", "007", "7"], ["01", "1", "001", "2", "02"]),
    "unicode-and-commas": (["ユーザー", "a,b", '"q"', "NA"], ["é", "x,y", "nan", "١٢", "z"]),
    "huge-integers": ([str(2**64), str(-(2**70)), "5", "6"], [str(10**25), "1", "2", "3", "4"]),
    "mixed-int-float": (["1", "1.0", "2", "2.5"], ["10", "10.0", "1e3", "11", "12"]),
    "int64": (["-5", "0", str(2**63 - 1), "42"], ["1", "2", "3", "4", "5"]),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_train_then_recall_returns_the_raw_ids_given(kind: str, tmp_path: Path) -> None:
    users, items = KINDS[kind]
    log = tmp_path / "log.csv"
    _log(users, items, per_user=len(items)).to_csv(log, index=False)
    config = tmp_path / "run.toml"
    config.write_text(TINY)
    run = tmp_path / "run"
    cli = CliRunner()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = cli.invoke(
            make_app(), ["train", str(config), "--data", str(log), "--out", str(run), "--quiet"]
        )
        assert result.exit_code == 0, result.output
        saved = json.loads((run / "encoders.json").read_text())
        assert saved["user_id"]["id_type"] == _expected_type(users)
        out = tmp_path / "recs.csv"
        result = cli.invoke(
            make_app(), ["recall", str(run), "--users", "all", "-k", "3", "--output", str(out)]
        )
        assert result.exit_code == 0, result.output
        recs = pd.read_csv(out, dtype=str, keep_default_na=False)
        assert sorted(set(recs["user_id"])) == sorted(users)
        assert set(recs["item_id"]) <= set(items)
        for user in users:  # one user typed at the command line, exactly as in the file
            result = cli.invoke(make_app(), ["recall", str(run), "--user", user, "-k", "3"])
            assert result.exit_code == 0, (user, result.output)
    finally:
        torch.set_num_threads(threads)


def test_a_parquet_log_is_read_with_the_same_id_rule(tmp_path: Path) -> None:
    """pyarrow is a core dependency: parquet logs load; typed int columns stay int64, text
    columns follow the CSV rule (all canonical int64 -> int64, else the strings)."""
    path = tmp_path / "log.parquet"
    frame = _log(["0003", "3", "x"], ["1", "2", "3", "4"], per_user=4)
    frame["item_id"] = frame["item_id"].astype(np.int64)
    frame.to_parquet(path)
    events = load_interactions_file(path).events
    assert events["user_id"].tolist() == frame["user_id"].tolist()
    assert events["item_id"].dtype == np.int64
    assert events["item_id"].tolist() == frame["item_id"].tolist()
    data = prepare(load_interactions_file(path), max_len=5, min_interactions=3)
    assert data.encoders["user_id"].id_type == "str" and len(data.encoders["user_id"]) == 4
