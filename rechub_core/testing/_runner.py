"""Running the model checks: :func:`check_model`, :func:`assert_conforms`, and the entry
to the index kit, :func:`check_index`.

PYTEST_DONT_REWRITE: like the package, pytest need not rewrite it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from rechub_core.errors import RechubError
from rechub_core.preprocess import PreparedData
from rechub_core.specs import ModelSpec, TrainSettings
from rechub_core.testing._context import Context, ModelSource, conformance_data
from rechub_core.testing._encoding_checks import ENCODING_CHECKS
from rechub_core.testing._report import (
    CheckResult,
    ConformanceReport,
    one_line,
    run_checks,
    scratch_folder,
    where_in_model,
)
from rechub_core.testing._training_checks import TRAINING_CHECKS

#: every check, in the order they run
CHECKS: tuple[str, ...] = (
    "shapes",
    "padding",
    "recency",
    "batch",
    "steps",
    "gradients",
    "state_dict",
    "onnx",
    "training",
)

_CHECK_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    **ENCODING_CHECKS,
    **TRAINING_CHECKS,
}


def _resolve(model: ModelSource, train_defaults: TrainSettings | None) -> tuple[str, ModelSpec]:
    """A display name and a spec (a factory gets a stand-in spec) for ``model``."""
    if isinstance(model, str):
        from rechub_core.plugins import get_spec

        spec = get_spec("model", model)
        assert isinstance(spec, ModelSpec)
    elif isinstance(model, ModelSpec):
        spec = model
    elif callable(model):
        label = getattr(model, "__qualname__", None) or type(model).__name__
        return label, ModelSpec(
            name="model",
            factory=model,
            from_schema=model,
            train_defaults=train_defaults or TrainSettings(),
        )
    else:
        raise RechubError(
            f"check_model needs a registered model name, a ModelSpec or a factory "
            f"(schema -> MatchModel), got {type(model).__name__}"
        )
    if train_defaults is not None:
        spec = attrs.evolve(spec, train_defaults=train_defaults)
    return spec.name, spec


def check_model(
    model: ModelSource,
    *,
    params: Mapping[str, Any] | None = None,
    checks: Sequence[str] | None = None,
    data: PreparedData | None = None,
    workdir: str | Path | None = None,
    epochs: int = 3,
    train_defaults: TrainSettings | None = None,
    pad_sides: Sequence[str] = ("right", "left"),
    label: str | None = None,
) -> ConformanceReport:
    """Run the conformance checks on a model and report every result (nothing is raised for a
    failing check; call :meth:`ConformanceReport.raise_for_failures`).

    Args:
        model: a registered model name (``"SASRec"``), its :class:`ModelSpec`, or a factory
            ``factory(schema: DataSchema, **params) -> MatchModel`` (e.g. ``MyModel.from_schema``).
        params: keyword arguments of the spec's ``from_schema`` (or the factory), e.g. small
            widths.
        checks: names from :data:`CHECKS` to run (default: all, in order).
        data: prepared data to build and train on (default: :func:`conformance_data`).
        workdir: folder for checkpoints and ONNX files (default: a temporary folder).
        epochs: training epochs of the ``training`` check.
        train_defaults: how to train (default: the spec's; a factory gets ``TrainSettings()``:
            mode 2, or the model's last supported mode, with its default loss and uniform
            negatives).
        pad_sides: where the ``padding`` check adds padding: "right" (rechub's histories are
            right-padded) and "left" (a model must not be fooled by it: ordered histories are
            read compacted, ``docs/protocol.md``).
        label: the model's name in messages (default: the registered name, or the factory's).
    Returns:
        A :class:`ConformanceReport`; its failures name the model, the check and the fix.
    """
    selected = list(CHECKS if checks is None else checks)
    unknown = [c for c in selected if c not in _CHECK_FUNCTIONS]
    if unknown:
        raise RechubError(f"unknown conformance check(s) {unknown}; the checks are {CHECKS}")
    bad_sides = sorted(set(pad_sides) - {"left", "right"})
    if bad_sides or not pad_sides:
        raise RechubError(f"pad_sides must hold 'right' and/or 'left', got {list(pad_sides)}")
    resolved, spec = _resolve(model, train_defaults)
    label = label or resolved
    stand_in = not isinstance(model, str | ModelSpec)
    with scratch_folder(workdir) as folder, torch.random.fork_rng(devices=[]):
        ctx = Context(
            label,
            spec,
            dict(params or {}),
            data or conformance_data(),
            folder,
            epochs,
            tuple(pad_sides),
            stand_in,
        )
        results = _run(ctx, selected, explicit_defaults=train_defaults is not None)
    return ConformanceReport(label, tuple(results))


def _run(ctx: Context, selected: list[str], explicit_defaults: bool) -> list[CheckResult]:
    try:
        model = ctx.build()
    except Exception as exc:
        message = (
            f"{ctx.label}: the model could not be built from a DataSchema: {one_line(exc)}"
            f"{where_in_model(exc)}. Fix: from_schema(schema, **params) must return a MatchModel "
            "built from the schema's features (and accept the params you pass)"
        )
        skipped = [CheckResult(c, "skipped", "the model could not be built") for c in selected]
        return [CheckResult("build", "failed", message), *skipped]
    if ctx.stand_in:
        modes = tuple(model.supported_modes)
        defaults = ctx.spec.train_defaults
        if not explicit_defaults and defaults.mode not in modes:
            defaults = attrs.evolve(defaults, mode=modes[-1])
        ctx.spec = attrs.evolve(ctx.spec, modes=modes, train_defaults=defaults)
    return run_checks(
        ctx.label,
        selected,
        _CHECK_FUNCTIONS,
        ctx,
        "the model must accept the batches rechub builds (dicts of the declared features' "
        "tensors) and honour the MatchModel contract",
    )


def assert_conforms(model: ModelSource, **kwargs: Any) -> ConformanceReport:
    """:func:`check_model`, raising :class:`ConformanceError` when any check fails."""
    report = check_model(model, **kwargs)
    report.raise_for_failures()
    return report


def check_index(index: Any, **kwargs: Any) -> ConformanceReport:
    """The conformance checks of an item index (a registered name, an ``IndexSpec`` or a
    factory): recall@K against exact search on random vectors, exclusion, multi-interest merge,
    save/load round trip, empty and single-item catalogues, streamed builds. See
    :func:`rechub_core.index.checks.check_index` for the arguments."""
    from rechub_core.index.checks import check_index as run_index_checks

    return run_index_checks(index, **kwargs)
