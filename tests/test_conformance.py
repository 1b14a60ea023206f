"""The conformance kit (``rechub_core.testing``) over every registered model, and the kit's own
checks: each one catches the bug it is for, with a message naming the model, the check and
the fix."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from rechub_core import testing
from rechub_core.errors import RechubError
from rechub_core.features import Feature, SequenceFeature
from rechub_core.layers import EmbeddingLayer, masked_mean
from rechub_core.matching import KNOWN_MODELS
from rechub_core.plugins import get_spec, list_components
from rechub_core.schema import DataSchema
from rechub_core.specs import TrainSettings
from rechub_core.testing import CHECKS, ConformanceError, ConformanceReport, check_model
from rechub_core.towers import ItemEmbeddingTower, Tower, TwoTowerModel

pytest_plugins = ["rechub_core.testing"]  # fixtures: rechub_conformance, rechub_conformance_data

DIM = 8
WINDOW = 10  # the "oldest" toy's window: the kit's histories (10 wide) fit in it


# --- every registered model ---------------------------------------------------------------------


def test_every_known_model_is_registered() -> None:
    assert set(KNOWN_MODELS) <= set(list_components("model"))


@pytest.mark.parametrize("name", list_components("model"))
def test_registered_model_conforms(
    name: str, rechub_conformance: Callable[..., ConformanceReport]
) -> None:
    report = rechub_conformance(name)
    assert [r.check for r in report.results] == list(CHECKS)
    assert report.result("shapes").status == "passed"
    if get_spec("model", name).family in ("sequential", "multi_interest"):
        assert report.result("steps").status == "passed"  # they implement encode_user_steps


# --- the kit catches what it is for -------------------------------------------------------------


class ToyEncoder(Tower):
    """Mean-pooled history through a linear map, with one deliberate bug (or none)."""

    def __init__(self, features: list[Feature], bug: str | None = None) -> None:
        super().__init__()
        self.features = [f for f in features if isinstance(f, SequenceFeature)]
        self.output_dim = DIM
        self.bug = bug
        self.proj = nn.Linear(DIM, DIM)
        if bug == "unused":
            self.forgotten = nn.Linear(DIM, DIM)
        if bug == "attribute":
            self.offset = torch.randn(DIM)  # a plain attribute: not in the state dict

    def forward(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        emb, mask = embedding.sequence(x, self.features[0].name)  # (B, L, D), (B, L)
        if self.bug == "oldest":  # truncates to the first WINDOW columns: the oldest items
            emb, mask = emb[:, :WINDOW], mask[:, :WINDOW]
        if self.bug == "last_column":
            pooled = emb[:, -1]  # (B, D)
        elif self.bug == "assumes_right":  # the newest item at count - 1: right padding only
            last = (mask.sum(dim=1) - 1).clamp(min=0)  # (B,)
            pooled = emb[torch.arange(emb.shape[0]), last]  # (B, D)
        else:
            pooled = masked_mean(emb, mask)  # (B, D)
        out = self.proj(pooled)  # (B, D)
        if self.bug == "batch_mean":
            out = out - out.mean(dim=0, keepdim=True)
        if self.bug == "attribute":
            out = out + self.offset
        if self.bug == "python_number":
            out = out * (int(mask.sum()) / 100)  # a Python number: a constant in the ONNX graph
        if self.bug == "flat":
            out = out.unsqueeze(1)  # (B, 1, D) without multi_interest
        if self.bug == "raises":
            raise KeyError("no such column")
        return out


class ToyStepsModel(TwoTowerModel):
    """Claims sequence training, but every step sees the whole history (not causal)."""

    trains_on_sequences = True

    def encode_user_steps(self, x: Mapping[str, Tensor]) -> Tensor:
        user = self.encode_user(x)  # (B, D)
        return user.unsqueeze(1).expand(-1, x[self.history_feature].shape[1], -1)  # (B, L, D)


class ToyPairwiseModel(TwoTowerModel):
    """Supports pair-wise training only."""

    supported_modes = (1,)


def toy(bug: str | None = None) -> Callable[[DataSchema], TwoTowerModel]:
    """A factory ``schema -> model`` with ``bug``."""

    def build(schema: DataSchema) -> TwoTowerModel:
        history = schema.history(DIM, pooling=None)
        item = ItemEmbeddingTower(schema.item_id(DIM))
        cls = {"non_causal": ToyStepsModel, "pairwise": ToyPairwiseModel}.get(bug, TwoTowerModel)
        return cls(ToyEncoder([history], bug), item, temperature=0.1)

    return build


def failure(report: ConformanceReport, check: str) -> str:
    result = report.result(check)
    assert result.status == "failed", str(report)
    assert result.message.startswith(f"Toy: check '{check}' failed: "), result.message
    assert "Fix: " in result.message
    return result.message


def test_a_correct_toy_model_passes_every_check() -> None:
    report = check_model(toy(), label="Toy")
    assert report.ok, str(report)
    assert report.result("steps").status == "skipped"  # not trained on sequences
    assert "PASSED  onnx" in str(report)


@pytest.mark.parametrize(
    ("bug", "check", "problem", "fix"),
    [
        ("flat", "shapes", "returned (5, 1, 8), expected (B, D)", "squeeze the interest axis"),
        ("last_column", "padding", "appending 3 padding ids (0)", "mask padding positions"),
        ("assumes_right", "padding", "prepending 3 padding ids (0)", "rechub_core.history"),
        (
            "oldest",
            "recency",
            "changing only the newest (last) item did not change any user vector",
            "keep the newest max_len items",
        ),
        ("batch_mean", "batch", "encoded alone differs", "no statistics over the batch axis"),
        ("non_causal", "steps", "encode_user_steps is not causal", "layers.causal_mask"),
        (
            "unused",
            "gradients",
            "gradients did not reach parameters ['user_tower.forgotten.weight', "
            "'user_tower.forgotten.bias']",
            "make sure every parameter is used in encode_user/encode_item",
        ),
        ("attribute", "state_dict", "the user vectors differ", "register_buffer"),
        ("python_number", "onnx", "differs from PyTorch", "do not bake the example's"),
        ("raises", "shapes", "it raised KeyError: 'no such column' (at test_conformance.py", ""),
    ],
)
def test_each_check_catches_its_bug(bug: str, check: str, problem: str, fix: str) -> None:
    report = check_model(toy(bug), checks=[check], label="Toy")
    message = failure(report, check)
    assert problem in message
    assert fix in message
    with pytest.raises(ConformanceError, match=f"check '{check}' failed"):
        report.raise_for_failures()


def test_training_that_does_not_lower_the_loss_fails() -> None:
    frozen = TrainSettings(mode=2, loss="softmax", sampler="full", lr=0.0)
    report = check_model(toy(), checks=["training"], train_defaults=frozen, label="Toy")
    message = failure(report, "training")
    assert "did not lower the training loss (by 0.01% at least)" in message
    assert "sampler full, lr 0" in message


def test_a_factory_is_trained_in_a_mode_it_supports() -> None:
    report = check_model(toy("pairwise"), checks=["gradients", "training"], label="Toy")
    assert report.ok, str(report)
    frozen = TrainSettings(mode=2)  # asked for explicitly: the model's refusal is reported
    report = check_model(toy("pairwise"), checks=["training"], train_defaults=frozen, label="Toy")
    assert "supports modes [1], not mode=2" in failure(report, "training")


def test_both_padding_sides_are_checked_by_default() -> None:
    report = check_model(toy("last_column"), checks=["padding"], pad_sides=["left"], label="Toy")
    assert report.ok  # the last column of a left-padded history is its last item
    report = check_model(toy("last_column"), checks=["padding"], label="Toy")
    assert "appending" in failure(report, "padding")
    report = check_model(toy("assumes_right"), checks=["padding"], pad_sides=["right"])
    assert report.ok  # right padding alone does not show it
    message = failure(check_model(toy("assumes_right"), checks=["padding"], label="Toy"), "padding")
    assert "prepending" in message


def test_a_model_reading_the_oldest_items_fails_only_recency() -> None:
    """Before the recency check such a model passed every check (issue #16)."""
    report = check_model(toy("oldest"), label="Toy")
    assert [r.check for r in report.failures] == ["recency"], str(report)


def test_a_model_that_cannot_be_built_is_one_failure() -> None:
    def broken(schema: DataSchema) -> TwoTowerModel:
        raise ValueError("needs a 'genre' column")

    report = check_model(broken, label="Toy")
    assert [(r.check, r.status) for r in report.results][:2] == [
        ("build", "failed"),
        ("shapes", "skipped"),
    ]
    assert "needs a 'genre' column" in report.failures[0].message
    assert len(report.failures) == 1


def test_bad_arguments_are_rechub_errors() -> None:
    with pytest.raises(RechubError, match="unknown conformance check"):
        check_model(toy(), checks=["shape"])
    with pytest.raises(RechubError, match="pad_sides"):
        check_model(toy(), pad_sides=["middle"])
    with pytest.raises(RechubError, match="no model named 'NoSuchModel'"):
        check_model("NoSuchModel")


def test_report_header_lists_plugins() -> None:
    (line,) = testing.pytest_report_header(config=None)  # type: ignore[arg-type]
    assert line.startswith("rechub plugins: ")
    assert "dssm 0.1.0 (ok)" in line


def test_fixture_fails_the_test_with_the_report(
    rechub_conformance: Callable[..., ConformanceReport], tmp_path: Path
) -> None:
    with pytest.raises(pytest.fail.Exception) as err:
        rechub_conformance(toy("unused"), checks=["gradients"], label="Toy")
    assert "Toy: check 'gradients' failed" in str(err.value)
    assert (tmp_path / "conformance").is_dir()  # the fixture works in the test's tmp_path
