"""rechub_core.export: ONNX towers with dynamic batch (and history length) axes that match
PyTorch, written atomically, leaving the model as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rechub_core import export as rechub_export
from rechub_core.errors import InputError
from rechub_core.export import TowerModule, export_tower, onnx_max_abs_diff
from rechub_core.preprocess import PreparedData
from rechub_core.schema import DataSchema
from rechub_core.towers import ItemEmbeddingTower, MLPTower, TwoTowerModel

DIM = 8


def small_model(data: PreparedData) -> TwoTowerModel:
    torch.manual_seed(0)
    schema = DataSchema.from_prepared(data)
    user = MLPTower(schema.pooled_user(DIM, user_id=True), [DIM])
    item = ItemEmbeddingTower(schema.item_id(DIM))
    return TwoTowerModel(user, item, temperature=0.1)


def batch_of(data: PreparedData, model: TwoTowerModel, side: str, rows: int) -> dict:
    source = data.test.users if side == "user" else data.items
    names = model.user_feature_names if side == "user" else model.item_feature_names
    return {n: torch.as_tensor(source[n][1 : rows + 1]) for n in names}


@pytest.mark.parametrize("side", ["user", "item"])
def test_exported_tower_matches_pytorch_at_any_batch_size(
    synthetic: PreparedData, tmp_path: Path, side: str
) -> None:
    model = small_model(synthetic)
    path = export_tower(model, tmp_path / f"{side}.onnx", side, batch_of(synthetic, model, side, 4))
    assert path == tmp_path / f"{side}.onnx" and path.exists()
    for rows in (1, 37):
        batch = batch_of(synthetic, model, side, rows)
        assert onnx_max_abs_diff(model, path, side, batch) < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(TowerModule(model, side).names)
    assert [o.name for o in session.get_outputs()] == ["vector"]


def test_user_tower_takes_another_history_length(synthetic: PreparedData, tmp_path: Path) -> None:
    model = small_model(synthetic)
    path = export_tower(
        model, tmp_path / "user.onnx", "user", batch_of(synthetic, model, "user", 2)
    )
    batch = batch_of(synthetic, model, "user", 9)
    batch["hist_item_id"] = batch["hist_item_id"][:, -7:]  # (B, 7) instead of (B, L)
    assert onnx_max_abs_diff(model, path, "user", batch) < 1e-4


def test_export_leaves_the_models_mode_alone(synthetic: PreparedData, tmp_path: Path) -> None:
    model = small_model(synthetic).train()
    export_tower(model, tmp_path / "item.onnx", "item", batch_of(synthetic, model, "item", 3))
    assert model.training
    onnx_max_abs_diff(model, tmp_path / "item.onnx", "item", batch_of(synthetic, model, "item", 3))
    assert model.training


def test_bad_mode_and_missing_inputs_name_the_fix(synthetic: PreparedData, tmp_path: Path):
    model = small_model(synthetic)
    with pytest.raises(InputError, match="mode must be 'user' or 'item', got 'both'"):
        export_tower(model, tmp_path / "x.onnx", "both", {})
    batch = batch_of(synthetic, model, "user", 2)
    del batch["hist_item_id"]
    with pytest.raises(InputError, match=r"lacks the user inputs \['hist_item_id'\]"):
        export_tower(model, tmp_path / "x.onnx", "user", batch)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_keeps_the_previous_file(
    synthetic: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = small_model(synthetic)
    batch = batch_of(synthetic, model, "item", 2)
    path = export_tower(model, tmp_path / "item.onnx", "item", batch)
    before = path.read_bytes()

    def fails(tower: object, args: object, f: str, **kwargs: object) -> None:
        Path(f).write_bytes(b"partial")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(rechub_export.torch.onnx, "export", fails)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_tower(model, path, "item", batch)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["item.onnx"]  # no temporary file left
    assert np.isfinite(onnx_max_abs_diff(model, path, "item", batch))
