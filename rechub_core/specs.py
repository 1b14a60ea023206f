"""Typed records that plugins yield from their registration hooks.

Each record names one component and the callable that builds it. Records are frozen attrs
classes, so a plugin cannot change a registration after the registry has seen it.

A factory (and a model's ``from_schema``) may be given lazily as a ``"module:attr"`` string,
like timm's lazy registry: the module is imported on first use of ``spec.factory``, so listing
plugins or components (``rechub list-plugins``, ``rechub --help``) imports neither torch nor the
plugins' model modules.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from rechub_core.errors import InputError

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")


def normalize_name(name: str) -> str:
    """Registry key of a component name: case-insensitive, ``-`` and ``_`` equivalent."""
    return name.strip().lower().replace("-", "_")


def _check_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name}={value!r} is not a valid component "
            "name: use letters, digits, '_', '-' or '.', starting with a letter"
        )


_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _check_factory(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None and attribute.name == "_from_schema":
        return
    if isinstance(value, str):
        if not _TARGET_RE.match(value):
            raise ValueError(
                f"{type(instance).__name__}.{attribute.alias}={value!r} is not a lazy target: "
                "write 'package.module:Name' (or 'package.module:Name.from_schema'), or pass "
                "the callable itself"
            )
        return
    if not callable(value):
        raise TypeError(
            f"{type(instance).__name__}.{attribute.alias} must be callable (a class or a "
            "function that builds the component) or a lazy 'module:attr' string, got "
            f"{type(value).__name__}"
        )


def resolve_target(target: str, *, what: str = "factory") -> Any:
    """Import ``"package.module:attr.sub"`` and return that attribute.

    Raises:
        LazyImportError: the module does not import or has no such attribute; the message
            names the target and the fix (reinstall the plugin that registered it).
    """
    from rechub_core.errors import LazyImportError

    module_name, _, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise LazyImportError(
            f"the {what} registered as {target!r} cannot be loaded: {exc}; reinstall the "
            f"plugin that provides {module_name.split('.')[0]!r} (pip install -e <its folder>), "
            "or fix the 'module:attr' string in its registration"
        ) from exc
    return obj


def lazy_exports(
    package: str, sources: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` (PEP 562) for a plugin package whose public names load
    on first access, so that loading its ``plugin`` module to list it imports no model code.

    Args:
        package: the package's ``__name__``.
        sources: public name -> the submodule of ``package`` that defines it.
        namespace: the package's ``globals()`` (a loaded name is cached there).

    Use: ``__getattr__, __dir__ = lazy_exports(__name__, _SOURCES, globals())``.
    """

    def __getattr__(name: str) -> Any:
        if name in sources:
            value = getattr(importlib.import_module(f"{package}.{sources[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*namespace, *sources])

    return __getattr__, __dir__


@attrs.frozen(kw_only=True)
class ComponentSpec:
    """A registered component: ``factory(**params)`` builds it.

    Attributes:
        name: the name users pass to ``create(kind, name)``; matched case-insensitively.
        factory: class or function that builds the component from keyword parameters, or a
            lazy ``"module:attr"`` string imported on first use (reading ``spec.factory``
            always gives the callable; ``spec.target`` the string, or None).
        description: one line shown by ``rechub list-components``.
    """

    kind: ClassVar[str] = "component"

    name: str = attrs.field(validator=_check_name)
    _factory: Callable[..., Any] | str = attrs.field(validator=_check_factory, alias="factory")
    description: str = ""

    @property
    def factory(self) -> Callable[..., Any]:
        """The callable that builds the component (imports a lazy target on first use)."""
        if isinstance(self._factory, str):
            return resolve_target(self._factory, what=f"{self.kind} {self.name!r}")
        return self._factory

    @property
    def target(self) -> str | None:
        """The lazy ``"module:attr"`` of the factory, or None when given as a callable."""
        return self._factory if isinstance(self._factory, str) else None


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
    """An item index: ``factory(**params)`` builds an empty :class:`rechub_core.index.Index`
    (built from item vectors, searched top-K for user vectors); :meth:`load` reads one back.

    Attributes:
        loader: ``loader(path) -> Index`` reading a file the index's ``save`` wrote; default:
            the factory's ``load`` classmethod (every ``Index`` subclass has one).
    """

    kind: ClassVar[str] = "index"
    loader: Callable[..., Any] | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.is_callable())
    )

    def load(self, path: Any) -> Any:
        """The index saved at ``path`` (a run folder's ``index.npz``)."""
        from rechub_core.errors import CheckpointError

        loader = self.loader or getattr(self.factory, "load", None)
        if not callable(loader):
            raise CheckpointError(
                f"index {self.name!r} cannot read saved indexes: its IndexSpec has no loader "
                "and its factory no load(); its plugin must subclass rechub_core.index.Index "
                "or register IndexSpec(loader=...)"
            )
        return loader(path)


@attrs.frozen(kw_only=True)
class TrainSettings:
    """How a model is trained: the one type for training settings.

    A model's documented defaults are one (``ModelSpec.train_defaults``: how ``rechub train
    --model NAME`` trains it when the user says nothing else); a run's effective settings are
    those defaults with the config's ``[train]`` section (same field names) laid over them
    (``rechub_core.runs.effective_settings``); ``MatchTrainer(settings=...)`` trains with one,
    and its Torch-RecHub keywords (``n_epoch``, ``earlystop_patience``, ``optimizer_params``)
    map onto one in exactly one place (``rechub_core.trainer.settings_from_keywords``).

    Attributes:
        mode: 0 point-wise, 1 pair-wise, 2 list-wise.
        loss: loss component name (``None``: the mode's default loss).
        loss_params: keyword arguments of the loss.
        sampler: sampler component name; ``"auto"`` (the three families' default) is the
            documented catalogue-size rule: a full softmax up to 5,000 items (a model may raise
            the bound through ``sampler_params``; the sequential family uses 25,000), 512
            negatives shared by the batch above (``rechub_core.samplers.AutoSoftmaxSampler``).
        sampler_params: keyword arguments of the sampler.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2), per parameter.
        batch_size: training samples per step.
        sequence_batch_size: user sequences per step for models trained on every position
            (``trains_on_sequences``).
        epochs: epoch cap when training to early stopping.
        patience: epochs without validation improvement before stopping.
        lr_decay: after every epoch whose validation metric does not improve, multiply the
            learning rate by this factor (in ``(0, 1]``; 1 keeps it constant).
        ema_epochs: validate, early-stop and keep the best weights on an exponential moving
            average of the weights over about this many epochs of steps (0: the raw weights;
            :mod:`rechub_core.averaging`). Costs a pass over every parameter a step.
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
    epochs: int = 30
    patience: int = 3
    lr_decay: float = attrs.field(default=1.0)
    ema_epochs: float = attrs.field(default=0.0)

    @ema_epochs.validator
    def _check_ema_epochs(self, attribute: attrs.Attribute, value: float) -> None:
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"ema_epochs must be >= 0 (0 = no weight average), got {value!r}")

    @lr_decay.validator
    def _check_lr_decay(self, attribute: attrs.Attribute, value: float) -> None:
        if not 0.0 < value <= 1.0:
            raise InputError(f"lr_decay must lie in (0, 1] (1 = no decay), got {value!r}")


def __getattr__(name: str) -> Any:
    # the old name of TrainSettings, kept for plugins written against rechub 0.1
    if name == "TrainDefaults":
        import warnings

        warnings.warn(
            "rechub_core.specs.TrainDefaults is now TrainSettings (its max_epochs is epochs)",
            DeprecationWarning,
            stacklevel=2,
        )
        return TrainSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@attrs.frozen(kw_only=True)
class ModelSpec(ComponentSpec):
    """A ready-made model.

    Attributes:
        family: the family it belongs to ("dssm", "sequential", "multi_interest", ...).
        modes: the training modes (0/1/2) the model supports. Declared once, on the model
            class (``MatchModel.supported_modes``), and read from there (importing a lazy
            factory on first use); pass it only for a factory that is not a model class.
        from_schema: ``from_schema(schema, **params) -> model`` builds the model for a prepared
            data set (see :class:`rechub_core.schema.DataSchema`); used by ``rechub train``.
            Default: the model class's ``from_schema`` (read on first use, like ``modes``);
            a lazy ``"module:Class.from_schema"`` string is imported on first use.
        train_defaults: how the CLI trains it when no config says otherwise.
    """

    kind: ClassVar[str] = "model"
    family: str = ""
    _modes: tuple[int, ...] | None = attrs.field(default=None, alias="modes")
    _from_schema: Callable[..., Any] | str | None = attrs.field(
        default=None, validator=_check_factory, alias="from_schema"
    )
    train_defaults: TrainSettings = attrs.field(factory=TrainSettings)

    @property
    def modes(self) -> tuple[int, ...]:
        """The training modes the model supports: its class's ``supported_modes``."""
        if self._modes is not None:
            return tuple(self._modes)
        return tuple(getattr(self.factory, "supported_modes", (0, 1, 2)))

    @property
    def from_schema(self) -> Callable[..., Any] | None:
        """``from_schema(schema, **params)``: the one given (imported on first use when given
        lazily), else the model class's own ``from_schema`` (None when it has none)."""
        if isinstance(self._from_schema, str):
            return resolve_target(self._from_schema, what=f"from_schema of model {self.name!r}")
        if self._from_schema is None:
            return getattr(self.factory, "from_schema", None)
        return self._from_schema


#: The component kinds, in one table: kind -> (the record its hook yields, the hook's name).
#: ``KINDS``, ``SPEC_TYPES`` and ``rechub_core.hookspecs.COMPONENT_HOOKS`` are views of it.
COMPONENT_KINDS: dict[str, tuple[type[ComponentSpec], str]] = {
    "tower": (TowerSpec, "rechub_register_towers"),
    "encoder": (EncoderSpec, "rechub_register_encoders"),
    "loss": (LossSpec, "rechub_register_losses"),
    "sampler": (SamplerSpec, "rechub_register_samplers"),
    "index": (IndexSpec, "rechub_register_indexes"),
    "model": (ModelSpec, "rechub_register_models"),
}
KINDS: tuple[str, ...] = tuple(COMPONENT_KINDS)
SPEC_TYPES: dict[str, type[ComponentSpec]] = {k: v[0] for k, v in COMPONENT_KINDS.items()}
