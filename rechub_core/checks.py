"""Checks of a run configuration that need the registry or the machine, run before any work.

:func:`check_run_config` is what ``rechub train`` (and :func:`rechub_core.runs.train_run`) call
before reading data or creating a folder: every value the config file's own validators cannot
judge (the device exists, the metric is computed, the index and components are registered, the
model accepts its parameters, the data source exists) fails here with its fix named, not after
an hour of training.
"""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path
from typing import Any

import torch

from rechub_core.config import RunConfig
from rechub_core.errors import ConfigError, InputError
from rechub_core.metric_names import DEFAULT_KS, METRIC_NAMES
from rechub_core.plugins import create, get_spec
from rechub_core.specs import ModelSpec

_DEVICE = re.compile(r"cpu|cuda(?::(\d+))?")
#: positional arguments ``from_schema`` hands a model class itself (not user parameters)
_BUILT_FROM_SCHEMA = frozenset(
    {"self", "user_features", "item_features", "features", "history_feature", "schema"}
)
_BUILTIN_SOURCES = ("synthetic", "movielens-100k", "ml-100k", "movielens")


def metric_names() -> list[str]:
    """The validation metrics the trainer computes, e.g. ``ndcg@10``."""
    return [f"{name}@{k}" for k in DEFAULT_KS for name in METRIC_NAMES]


def check_device(device: str) -> None:
    """``device`` is ``cpu``, ``cuda`` or ``cuda:N`` and exists on this machine."""
    match = _DEVICE.fullmatch(device)
    if match is None:
        raise ConfigError(
            f"device {device!r} is not one of 'cpu', 'cuda', 'cuda:N'; pass --device cpu or "
            "--device cuda (train.device)"
        )
    if device == "cpu":
        return
    if torch.version.cuda is None:
        raise ConfigError(
            f"device {device!r}: this PyTorch build ({torch.__version__}) has no CUDA support; "
            "pass --device cpu, or install a CUDA build of torch"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r}: no CUDA device is visible (check the driver and "
            "CUDA_VISIBLE_DEVICES); pass --device cpu"
        )
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
            f"(cuda:0..cuda:{torch.cuda.device_count() - 1}); pass one of those"
        )


def model_param_names(spec: ModelSpec) -> list[str] | None:
    """Keyword parameters ``[model.params]`` may hold for ``spec`` (its ``from_schema``'s
    named ones plus, when that forwards ``**params``, the model class's); None if any is open."""
    factory = spec.from_schema
    if factory is None:
        return None
    names: list[str] = []
    for fn in (factory, getattr(getattr(factory, "__self__", None), "__init__", None)):
        if fn is None:
            continue
        params = list(inspect.signature(fn).parameters.values())
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    else:
        return None  # the class itself takes **kwargs: anything may be valid
    return sorted(set(names) - _BUILT_FROM_SCHEMA)


def check_model_params(spec: ModelSpec, params: dict[str, Any]) -> None:
    """Every key of ``[model.params]`` is a parameter the model accepts."""
    accepted = model_param_names(spec)
    if accepted is None:
        return
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"[model.params] has key(s) {unknown} that {spec.name} does not accept; "
            f"accepted keys: {', '.join(accepted)}"
        )


def check_data_source(source: str) -> None:
    """A ``--data`` path exists and is a file (the built-in names are checked when loaded)."""
    if source.lower() in _BUILTIN_SOURCES:
        return
    path = Path(source)
    if path.is_dir():
        raise InputError(
            f"--data {source!r} is a folder; pass the CSV/parquet/sequence file inside it, or "
            f"--data movielens-100k --data-dir {source} for MovieLens-100K"
        )
    if not path.exists():
        raise InputError(
            f"--data {source!r} is neither 'synthetic', 'movielens-100k' nor an existing file; "
            "check the path"
        )
    if not os.access(path, os.R_OK):
        raise InputError(f"--data {source!r} is not readable; check its permissions")


def check_run_config(cfg: RunConfig) -> ModelSpec:
    """Check ``cfg`` against the registry and this machine; return the model's spec.

    Raises:
        RechubError: the first problem found, with the option or config key and the fix.
    """
    from rechub_core.runs import effective_settings

    spec = get_spec("model", cfg.model.name)
    if not isinstance(spec, ModelSpec):
        raise ConfigError(f"{cfg.model.name!r} is not a model")
    check_model_params(spec, dict(cfg.model.params))
    effective_settings(cfg, spec)  # the mode
    check_device(cfg.train.device)
    if cfg.train.metric not in metric_names():
        raise ConfigError(
            f"train.metric {cfg.train.metric!r} is not computed; choose one of "
            f"{', '.join(metric_names())}"
        )
    for kind, comp in (("loss", cfg.loss), ("sampler", cfg.sampler)):
        if comp is not None:
            get_spec(kind, comp.name)
    create("index", cfg.index.name, **cfg.index.params)  # unknown name, kind or parameter
    check_data_source(cfg.data.source)
    return spec
