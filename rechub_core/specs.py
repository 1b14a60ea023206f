"""Typed records that plugins yield from their registration hooks.

Each record names one component and the callable that builds it. Records are frozen attrs
classes, so a plugin cannot change a registration after the registry has seen it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")

KINDS: tuple[str, ...] = ("tower", "encoder", "loss", "sampler", "index", "model")


def normalize_name(name: str) -> str:
    """Registry key of a component name: case-insensitive, ``-`` and ``_`` equivalent."""
    return name.strip().lower().replace("-", "_")


def _check_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name}={value!r} is not a valid component "
            "name: use letters, digits, '_', '-' or '.', starting with a letter"
        )


def _check_callable(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not callable(value):
        raise TypeError(
            f"{type(instance).__name__}.{attribute.name} must be callable (a class or a "
            f"function that builds the component), got {type(value).__name__}"
        )


@attrs.frozen(kw_only=True)
class ComponentSpec:
    """A registered component: ``factory(**params)`` builds it.

    Attributes:
        name: the name users pass to ``create(kind, name)``; matched case-insensitively.
        factory: class or function that builds the component from keyword parameters.
        description: one line shown by ``rechub list-components``.
    """

    kind: ClassVar[str] = "component"

    name: str = attrs.field(validator=_check_name)
    factory: Callable[..., Any] = attrs.field(validator=_check_callable)
    description: str = ""


@attrs.frozen(kw_only=True)
class TowerSpec(ComponentSpec):
    """An item or user tower: a module mapping a feature batch to vectors ``(B, D)``."""

    kind: ClassVar[str] = "tower"


@attrs.frozen(kw_only=True)
class EncoderSpec(ComponentSpec):
    """A user encoder: ``encode_user(x) -> (B, D)``, or ``(B, K, D)`` when ``multi_interest``."""

    kind: ClassVar[str] = "encoder"
    multi_interest: bool = False


@attrs.frozen(kw_only=True)
class LossSpec(ComponentSpec):
    """A training loss over candidate logits ``(B, C)`` with the positive's column given."""

    kind: ClassVar[str] = "loss"


@attrs.frozen(kw_only=True)
class SamplerSpec(ComponentSpec):
    """A negative sampler: draws candidate item ids for each batch."""

    kind: ClassVar[str] = "sampler"


@attrs.frozen(kw_only=True)
class IndexSpec(ComponentSpec):
    """An item index: build from item vectors, search top-K for user vectors."""

    kind: ClassVar[str] = "index"


@attrs.frozen(kw_only=True)
class TrainDefaults:
    """How ``rechub train --model NAME`` trains a model when the user says nothing else.

    Attributes:
        mode: 0 point-wise, 1 pair-wise, 2 list-wise.
        loss: loss component name (``None``: the mode's default loss).
        loss_params: keyword arguments of the loss.
        sampler: sampler component name.
        sampler_params: keyword arguments of the sampler.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2), per parameter.
        batch_size: training samples per step.
        sequence_batch_size: user sequences per step for models trained on every position
            (``trains_on_sequences``).
        max_epochs: epoch cap when training to early stopping.
        patience: epochs without validation improvement before stopping.
    """

    mode: int = 2
    loss: str | None = None
    loss_params: dict[str, Any] = attrs.field(factory=dict)
    sampler: str = "uniform"
    sampler_params: dict[str, Any] = attrs.field(factory=dict)
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 512
    sequence_batch_size: int = 128
    max_epochs: int = 30
    patience: int = 3


@attrs.frozen(kw_only=True)
class ModelSpec(ComponentSpec):
    """A ready-made model.

    Attributes:
        family: the family it belongs to ("dssm", "sequential", "multi_interest", ...).
        modes: the training modes (0/1/2) the model supports.
        from_schema: ``from_schema(schema, **params) -> model`` builds the model for a prepared
            data set (see :class:`rechub_core.schema.DataSchema`); used by ``rechub train``.
        train_defaults: how the CLI trains it when no config says otherwise.
    """

    kind: ClassVar[str] = "model"
    family: str = ""
    modes: tuple[int, ...] = (0, 1, 2)
    from_schema: Callable[..., Any] | None = None
    train_defaults: TrainDefaults = attrs.field(factory=TrainDefaults)


SPEC_TYPES: dict[str, type[ComponentSpec]] = {
    "tower": TowerSpec,
    "encoder": EncoderSpec,
    "loss": LossSpec,
    "sampler": SamplerSpec,
    "index": IndexSpec,
    "model": ModelSpec,
}
