"""The kit's data, its tolerances and the context every model check receives.

PYTEST_DONT_REWRITE: like the package, pytest need not rewrite it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import Tensor

from rechub_core.features import SequenceFeature
from rechub_core.model import MatchModel
from rechub_core.preprocess import PreparedData
from rechub_core.schema import DataSchema
from rechub_core.specs import ModelSpec

if TYPE_CHECKING:
    from rechub_core.specs import TrainSettings
    from rechub_core.trainer import MatchTrainer

#: users and items in the shape and batch checks: different, so that a mixed-up axis shows
USER_ROWS, ITEM_ROWS = 5, 7
#: largest difference accepted between computations that must agree (float32 on CPU)
ATOL = 1e-5
#: length of the ``recency`` check's histories: longer than the window of any model built on
#: the kit's data (its histories are 10 wide), so a model reading the oldest items misses the
#: newest one
LONG_HISTORY = 120
#: largest difference accepted between onnxruntime and PyTorch (DESIGN.md)
ONNX_TOLERANCE = 1e-4
#: the ``training`` check wants the last epoch's loss at least this fraction below the first's:
#: enough to tell learning from float noise in a loss that does not move (every shipped model
#: drops by more than 25% in the kit's 3 epochs)
MIN_LOSS_DROP = 1e-4

ModelSource = str | ModelSpec | Callable[..., MatchModel]


@functools.lru_cache(maxsize=4)
def conformance_data(
    n_users: int = 64, n_items: int = 40, max_len: int = 10, seed: int = 0
) -> PreparedData:
    """Small seeded synthetic data under the protocol (user profile and item side columns,
    histories of different lengths), shared by every check; cached per arguments."""
    from rechub_core.preprocess import prepare
    from rechub_core.synthetic import synthetic_interactions

    events = synthetic_interactions(
        n_users=n_users, n_items=n_items, n_clusters=4, min_len=5, max_len=14, seed=seed
    )
    return prepare(events, max_len=max_len)


def take_rows(columns: Mapping[str, Any], start: int, stop: int) -> dict[str, Tensor]:
    return {k: torch.as_tensor(v[start:stop]) for k, v in columns.items()}


def max_diff(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


@attrs.define
class Context:
    """What every check needs: how to build the model, the data, a scratch folder."""

    label: str
    spec: ModelSpec
    params: dict[str, Any]
    data: PreparedData
    workdir: Path
    epochs: int
    pad_sides: tuple[str, ...] = ("right", "left")
    #: the spec stands in for a bare factory (its modes and default mode follow the model)
    stand_in: bool = False

    @property
    def schema(self) -> DataSchema:
        return DataSchema.from_prepared(self.data)

    def build(self, seed: int = 0) -> MatchModel:
        from rechub_core.runs import build_model

        torch.manual_seed(seed)
        return build_model(self.spec, self.schema, dict(self.params))

    def users(self, rows: int = USER_ROWS) -> dict[str, Tensor]:
        return take_rows(self.data.test.users, 0, rows)

    def items(self, rows: int = ITEM_ROWS) -> dict[str, Tensor]:
        return take_rows(self.data.items, 1, rows + 1)

    def trainer(
        self, model: MatchModel, folder: str, epochs: int = 1
    ) -> tuple[MatchTrainer, TrainSettings]:
        """A trainer configured as ``rechub train`` would (the spec's train_defaults), with
        small batches: several optimiser steps an epoch on the small data."""
        from rechub_core.runs import build_trainer, default_settings

        settings = default_settings(self.spec, epochs=epochs)
        settings = attrs.evolve(
            settings,
            batch_size=min(settings.batch_size, 128),
            sequence_batch_size=min(settings.sequence_batch_size, 16),
        )
        trainer = build_trainer(model, settings, self.workdir / folder, seed=0, verbose=False)
        return trainer, settings


def user_sequences(model: MatchModel, batch: Mapping[str, Tensor]) -> list[str]:
    return [
        f.name
        for f in model.user_features
        if isinstance(f, SequenceFeature) and f.name in batch and batch[f.name].dim() == 2
    ]
