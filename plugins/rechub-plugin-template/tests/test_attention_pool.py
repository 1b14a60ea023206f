"""Tests of the template's model: the rechub conformance kit, plus what is specific to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rechub_core import create, get_spec
from rechub_core.schema import DataSchema
from rechub_core.towers import TwoTowerModel
from rechub_plugin_template import AttentionPool, AttentionPoolEncoder

# opt into the kit's fixtures (or run `pytest -p rechub_core.testing`)
pytest_plugins = ["rechub_core.testing"]

SCHEMA = DataSchema(vocab={"user_id": 10, "item_id": 30, "hist_item_id": 30}, max_len=6)


def test_registered_model_conforms(rechub_conformance: Callable[..., Any]) -> None:
    """Shapes, padding, batch independence, gradients, save/load, ONNX, training: every check
    of rechub_core.testing on the installed plugin's registered model."""
    rechub_conformance("AttentionPool")


def test_registered_as_model_and_encoder() -> None:
    assert get_spec("model", "AttentionPool").factory is AttentionPool
    assert get_spec("encoder", "attention_pool").factory is AttentionPoolEncoder


def test_attention_ignores_padding_and_sums_to_one() -> None:
    torch.manual_seed(0)
    model = AttentionPool.from_schema(SCHEMA, embed_dim=8).eval()
    hist = torch.tensor([[3, 4, 0, 0], [5, 0, 0, 0]])
    with torch.no_grad():
        user = model.encode_user({"hist_item_id": hist})
        only_real = model.encode_user({"hist_item_id": hist[:, :2]})
    torch.testing.assert_close(user, only_real)
    assert torch.allclose(user.norm(dim=1), torch.ones(2))


def test_encoder_composes_with_another_item_tower() -> None:
    history, item_id = SCHEMA.history(8, pooling=None), SCHEMA.item_id(8)
    user = create("encoder", "attention_pool", features=[history], hidden_size=4)
    item = create("tower", "mlp", features=[item_id], dims=[16, 8])
    model = TwoTowerModel(user, item)
    vectors = model.encode_user({"hist_item_id": torch.tensor([[1, 2, 0]])})
    assert vectors.shape == (1, 8)
