"""The weights' moving average (``ema_epochs``): its update rule, the swap used for validation,
that fit validates and keeps the average, and that a resumed run equals an unbroken one."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rechub_core.averaging import WeightAverage
from rechub_core.data import loaders_from_prepared
from rechub_core.errors import CheckpointError, InputError
from rechub_core.io import load_torch
from rechub_core.preprocess import PreparedData
from rechub_core.specs import TrainSettings
from rechub_core.trainer import MatchTrainer
from tests.test_trainer import small_model


@settings(max_examples=25, deadline=None)
@given(
    epochs=st.floats(0.1, 5.0),
    steps_per_epoch=st.integers(1, 200),
    values=st.lists(st.floats(-10, 10), min_size=1, max_size=30),
)
def test_update_follows_the_documented_rule(
    epochs: float, steps_per_epoch: int, values: list[float]
) -> None:
    """After each step t: shadow = d_t shadow + (1 - d_t) w, with
    d_t = min(1 - 1 / (epochs * steps_per_epoch), (1 + t) / (10 + t))."""
    w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    model = nn.Module()
    model.w = w
    avg = WeightAverage(model, epochs, steps_per_epoch)
    expect = torch.zeros(3, dtype=torch.float64)
    cap = 1 - 1 / (epochs * steps_per_epoch)
    for t, v in enumerate(values, start=1):
        with torch.no_grad():
            w.fill_(v)
        avg.update()
        d = min(cap, (1 + t) / (10 + t))
        expect = d * expect + (1 - d) * v
    torch.testing.assert_close(avg.shadow[0], expect)
    assert avg.steps == len(values)


def test_swapped_in_shows_the_average_and_restores_the_raw_weights() -> None:
    lin = nn.Linear(3, 2)
    avg = WeightAverage(lin, 1.0, 10)
    raw = [p.detach().clone() for p in lin.parameters()]
    avg.shadow = [torch.full_like(p, 7.0) for p in lin.parameters()]
    with avg.swapped_in():
        assert all(bool((p == 7.0).all()) for p in lin.parameters())
    for p, r in zip(lin.parameters(), raw, strict=True):
        assert torch.equal(p, r)
    with pytest.raises(RuntimeError, match="boom"), avg.swapped_in():
        raise RuntimeError("boom")  # an error inside the block still restores the weights
    for p, r in zip(lin.parameters(), raw, strict=True):
        assert torch.equal(p, r)


def test_state_round_trip_and_a_mismatched_state_is_refused() -> None:
    lin = nn.Linear(3, 2)
    avg = WeightAverage(lin, 2.0, 5)
    for _ in range(4):
        with torch.no_grad():
            lin.weight.add_(1.0)
        avg.update()
    other = WeightAverage(nn.Linear(3, 2), 2.0, 5)
    other.load_state_dict(avg.state_dict())
    assert other.steps == 4
    for a, b in zip(avg.shadow, other.shadow, strict=True):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="weight average does not match"):
        WeightAverage(nn.Linear(4, 2), 2.0, 5).load_state_dict(avg.state_dict())
    with pytest.raises(InputError, match="ema_epochs > 0"):
        WeightAverage(lin, 0.0, 5)
    with pytest.raises(InputError, match="ema_epochs must be >= 0"):
        TrainSettings(ema_epochs=-1.0)


def _settings(epochs: int, ema: float) -> TrainSettings:
    base = TrainSettings(mode=2, sampler="uniform", lr=5e-3, epochs=epochs, patience=10)
    return attrs.evolve(base, loss="softmax", ema_epochs=ema)


def test_fit_keeps_the_average_and_a_resumed_run_equals_an_unbroken_one(
    synthetic: PreparedData, tmp_path: Path
) -> None:
    """With ema_epochs, the weights fit() ends with are the average of the best epoch (here:
    no validation loader, so every epoch is 'best' and the last one's average is kept), not
    the raw weights; a run killed after epoch 2 and resumed ends with the same weights and
    average as an unbroken 3-epoch run."""

    def run(path: Path, epochs: int, resume: bool = False, model_seed: int = 5) -> MatchTrainer:
        train, _, _ = loaders_from_prepared(synthetic, batch_size=512, seed=2)
        trainer = MatchTrainer(
            small_model(synthetic, seed=model_seed),
            settings=_settings(epochs, 0.5),
            model_path=path,
            seed=7,
            verbose=False,
        )
        trainer.fit(train, resume=resume)
        return trainer

    unbroken = run(tmp_path / "unbroken", 3)
    assert unbroken.average is not None and unbroken.average.steps > 0
    params = list(unbroken.model.parameters())
    for p, s in zip(params, unbroken.average.shadow, strict=True):
        assert torch.equal(p, s)  # the model holds the average
    raw = load_torch(tmp_path / "unbroken" / "checkpoint.pt")["state_dict"]
    assert any(  # ... which differs from the raw weights training ended with
        not torch.equal(raw[name], p) for name, p in unbroken.model.named_parameters()
    )
    run(tmp_path / "broken", 2)
    resumed = run(tmp_path / "broken", 3, resume=True, model_seed=99)
    assert resumed.average is not None and resumed.average.steps == unbroken.average.steps
    for a, b in zip(unbroken.average.shadow, resumed.average.shadow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    for a, b in zip(params, resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("written_with", "resumed_with", "message"),
    [(0.0, 1.0, "without a weight average"), (1.0, 0.0, "with a weight average")],
)
def test_a_checkpoint_whose_averaging_differs_is_refused_on_resume(
    synthetic: PreparedData,
    tmp_path: Path,
    written_with: float,
    resumed_with: float,
    message: str,
) -> None:
    """Both directions: resuming without the saved average would silently drop it (and change
    which weights validation and early stopping see); resuming with one would start it from
    weights it never averaged."""
    train, _, _ = loaders_from_prepared(synthetic, batch_size=512, seed=2)
    MatchTrainer(
        small_model(synthetic),
        settings=_settings(1, written_with),
        model_path=tmp_path,
        verbose=False,
    ).fit(train)
    resumed = MatchTrainer(
        small_model(synthetic),
        settings=_settings(2, resumed_with),
        model_path=tmp_path,
        verbose=False,
    )
    with pytest.raises(CheckpointError, match=message):
        resumed.fit(train, resume=True)


def test_validation_sees_the_average(synthetic: PreparedData, tmp_path: Path) -> None:
    """An epoch's validation metric is the averaged model's, not the raw weights'; the kept
    weights reproduce the best epoch's validation NDCG@10 (as without averaging)."""
    train, val, _ = loaders_from_prepared(synthetic, batch_size=256, seed=1)
    trainer = MatchTrainer(
        small_model(synthetic),
        settings=_settings(3, 1.0),
        model_path=tmp_path,
        seed=7,
        verbose=False,
    )
    history = trainer.fit(train, val)
    best = max(h["val_ndcg@10"] for h in history)
    assert trainer.evaluate(val)["ndcg@10"] == pytest.approx(best, abs=1e-6)
    assert trainer.average is not None
    last = history[-1]["val_ndcg@10"]
    with trainer.average.swapped_in():  # the last epoch's average
        assert trainer.evaluate(val)["ndcg@10"] == pytest.approx(last, abs=1e-6)
    raw = load_torch(tmp_path / "checkpoint.pt")["state_dict"]
    trainer.model.load_state_dict(raw)  # the raw weights of the last epoch score otherwise
    assert trainer.evaluate(val)["ndcg@10"] != pytest.approx(last, abs=1e-4)
