"""Composition in code (docs/plugins.md, "Composing a model from parts by name"): an encoder
from a plugin, an item tower, a loss and a sampler from the core, all by name, trained and
exported without subclassing anything."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rechub_core import create, get_spec
from rechub_core.data import loaders_from_prepared
from rechub_core.errors import InputError
from rechub_core.preprocess import PreparedData, prepare
from rechub_core.schema import DataSchema
from rechub_core.specs import EncoderSpec
from rechub_core.synthetic import synthetic_interactions
from rechub_core.testing import check_model
from rechub_core.towers import TwoTowerModel
from rechub_core.trainer import MatchTrainer

DIM, MAX_LEN = 16, 10


@pytest.fixture(scope="module")
def data() -> PreparedData:
    events = synthetic_interactions(n_users=80, n_items=50, n_clusters=4, seed=1)
    return prepare(events, max_len=MAX_LEN)


def compose(schema: DataSchema, encoder: str = "sasrec") -> TwoTowerModel:
    """A plugin's encoder (by name) against the core's MLP tower over the item id and its
    side columns; the history shares the item id's table."""
    history = schema.history(DIM, pooling=None)
    # every encoder names its inputs `features` and takes its width from the history
    user = create("encoder", encoder, features=[history], max_len=MAX_LEN, num_heads=2)
    item_id, side = schema.item_id(DIM), schema.item_side(DIM)
    item = create("tower", "mlp", features=[item_id, *side], dims=[32, DIM])
    return TwoTowerModel(user, item, temperature=0.1)


def test_compose_train_and_export_by_name(data: PreparedData, tmp_path: Path) -> None:
    spec = get_spec("encoder", "sasrec")
    assert isinstance(spec, EncoderSpec)
    assert spec.factory.__module__.startswith("rechub_plugins_seq")  # from a plugin
    torch.manual_seed(0)
    model = compose(DataSchema.from_prepared(data))
    assert type(model) is TwoTowerModel  # nothing subclassed
    assert not model.multi_interest

    trainer = MatchTrainer(
        model,
        mode=2,
        loss=create("loss", "sampled_softmax", logq_correction=True),
        sampler=create("sampler", "in_batch"),
        optimizer_params={"lr": 3e-3},
        n_epoch=3,
        earlystop_patience=3,
        model_path=tmp_path / "run",
        verbose=False,
    )
    train_dl, val_dl, test_dl = loaders_from_prepared(data, batch_size=64)
    history = trainer.fit(train_dl, val_dl)
    assert history[-1]["loss"] < history[0]["loss"]
    metrics = trainer.evaluate(test_dl, train_dl)
    assert all(math.isfinite(v) for v in metrics.values())
    for side in ("user", "item"):
        path = trainer.export_onnx(tmp_path / f"{side}.onnx", mode=side)  # parity < 1e-4
        assert path.stat().st_size > 0


def test_composition_passes_the_conformance_kit(data: PreparedData) -> None:
    report = check_model(compose, checks=["shapes", "padding", "batch", "gradients", "onnx"])
    assert report.ok, str(report)


def test_multi_interest_encoder_composes(data: PreparedData) -> None:
    torch.manual_seed(0)
    model = compose(DataSchema.from_prepared(data), encoder="comirec_sa")
    assert model.multi_interest
    batch = {k: torch.as_tensor(v[:3]) for k, v in data.test.users.items()}
    assert model.encode_user(batch).shape[::2] == (3, DIM)  # (B, K, D)


def test_mismatched_widths_are_named(data: PreparedData) -> None:
    schema = DataSchema.from_prepared(data)
    user = create("encoder", "gru4rec", features=[schema.history(DIM, pooling=None)], embed_dim=32)
    item = create("tower", "item_embedding", item_feature=schema.item_id(DIM))
    with pytest.raises(
        InputError, match=r"user tower outputs D=32, the item tower D=16.*embed_dim"
    ):
        TwoTowerModel(user, item)


@pytest.mark.parametrize(
    "name", ["gru4rec", "narm", "sasrec", "stamp", "mind", "sine", "comirec_dr", "comirec_sa"]
)
def test_every_history_encoder_has_one_base_and_one_keyword(data: PreparedData, name: str) -> None:
    """Every encoder of both families reads its history through the core's HistoryEncoder,
    takes `features=` and defaults its width to the history's."""
    from rechub_core.history import HistoryEncoder

    history = DataSchema.from_prepared(data).history(DIM, pooling=None)
    params = {"num_heads": 2} if name in ("sasrec", "sine", "comirec_dr", "comirec_sa") else {}
    encoder = create("encoder", name, features=[history], **params)
    assert isinstance(encoder, HistoryEncoder)
    assert encoder.output_dim == DIM and encoder.history is history
