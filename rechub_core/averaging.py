"""An exponential moving average (EMA) of a model's weights, for evaluation.

Training keeps updating the raw weights; validation, early stopping and the saved best weights
use the average, which follows the trajectory of the last ``epochs`` epochs or so and smooths
out the noise of small-batch steps. The horizon is given in epochs, not steps, so one setting
means the same on a 943-user and a 35,598-user data set: after step ``t`` (1-based)

    shadow = decay_t * shadow + (1 - decay_t) * weights,
    decay_t = min(1 - 1 / (epochs * steps_per_epoch), (1 + t) / (10 + t))

(the second bound is the usual warm-up: early on the shadow is close to a plain mean of the
steps so far, not the random initial weights). Each step costs one pass over every floating
parameter, which a full-catalogue softmax pays anyway; with row-wise updates of a large table
it would dominate the step, so no default turns it on there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from rechub_core.errors import CheckpointError, InputError


class WeightAverage:
    """EMA of ``model``'s floating-point parameters (buffers are not averaged).

    Args:
        model: the module whose parameters are averaged (read at every :meth:`update`).
        epochs: horizon in epochs (> 0).
        steps_per_epoch: optimizer steps an epoch (> 0).
    """

    def __init__(self, model: nn.Module, epochs: float, steps_per_epoch: int) -> None:
        if not epochs > 0 or steps_per_epoch < 1:
            raise InputError(
                f"the weight average needs ema_epochs > 0 and at least one step an epoch, got "
                f"ema_epochs={epochs!r}, steps_per_epoch={steps_per_epoch}"
            )
        self.params = [p for p in model.parameters() if p.is_floating_point()]
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = 1.0 - 1.0 / (epochs * steps_per_epoch)
        self.steps = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (after each optimizer step)."""
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - decay)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; the raw ones come back after."""
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.data for p in self.params], self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params], raw)

    def state_dict(self) -> dict[str, Any]:
        """The average and its step count (tensors and a number: ``weights_only`` loads it)."""
        return {"steps": self.steps, "shadow": list(self.shadow)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (from a checkpoint of the same model)."""
        shadow = list(state["shadow"])
        if len(shadow) != len(self.shadow) or any(
            a.shape != b.shape for a, b in zip(shadow, self.shadow, strict=True)
        ):
            raise CheckpointError(
                "the checkpoint's weight average does not match the model's parameters; resume "
                "with the model and settings it was written with"
            )
        with torch.no_grad():
            moved = [t.to(s.device) for t, s in zip(shadow, self.shadow, strict=True)]
            torch._foreach_copy_(self.shadow, moved)
        self.steps = int(state["steps"])
