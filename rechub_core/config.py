"""Run configuration: frozen attrs classes, one cattrs converter, TOML and JSON files.

A component in a config is ``{name = "...", params = {...}}`` and is resolved through the
registry. Unknown keys are errors (typos must not pass silently); errors read as paths,
e.g. ``invalid value for type, expected float @ $.train.lr``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
import cattrs
import tomli_w

from rechub_core.errors import ConfigError
from rechub_core.io import write_text

#: the values of ``[train] logits_dtype`` (:func:`rechub_core.trainer.resolve_logits_dtype`)
LOGITS_DTYPES = ("auto", "float32", "bfloat16")


class _RangeError(ValueError):
    """A value of the right type outside its allowed range."""


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):  # NaN fails too
        raise _RangeError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise _RangeError(f"{attribute.name} must be >= 0, got {value!r}")


def _device(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or re.fullmatch(r"cpu|cuda(:[0-9]+)?", value) is None:
        raise _RangeError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {value!r}")


def _logits_dtype(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in LOGITS_DTYPES:
        raise _RangeError(
            f"logits_dtype must be one of {', '.join(repr(v) for v in LOGITS_DTYPES)}, got "
            f"{value!r}"
        )


def _mode(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value not in (0, 1, 2):
        raise _RangeError(f"mode must be 0, 1 or 2, got {value!r}")


@attrs.frozen
class ComponentConfig:
    """A registered component by name, with its keyword parameters."""

    name: str
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class DataConfig:
    """Where the interactions come from and how they are prepared.

    Attributes:
        source: "synthetic", "movielens-100k", or a path to a CSV/parquet interaction log.
        data_dir: folder of MovieLens-100K (default: $RECHUB_DATA_DIR or ../shared/data).
        download: fetch MovieLens-100K into the cache when it is not found.
        max_len: history length L (most recent items kept).
        min_interactions: users with fewer interactions are dropped.
        user_col, item_col, time_col: column names of a user's own log.
        synthetic_users, synthetic_items: size of the synthetic data.
        seed: seed of the synthetic generator.
    """

    source: str = "synthetic"
    data_dir: str | None = None
    download: bool = False
    max_len: int = attrs.field(default=50, validator=_positive)
    min_interactions: int = attrs.field(default=5, validator=_positive)
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    synthetic_users: int = attrs.field(default=1000, validator=_positive)
    synthetic_items: int = attrs.field(default=500, validator=_positive)
    seed: int = 0


@attrs.frozen
class TrainConfig:
    """The config file's ``[train]`` section: fields of the same names as
    :class:`~rechub_core.specs.TrainSettings` override the model's defaults (None: keep the
    default; ``rechub_core.runs.effective_settings`` merges them), plus what a run needs
    besides (metric, seed, device, gather_negatives, threads).

    Attributes:
        mode: 0 point-wise, 1 pair-wise, 2 list-wise.
        epochs: epoch cap; None trains to early stopping (capped by the model's default epochs).
        batch_size: training rows per step.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        patience: early-stopping patience in epochs.
        sequence_batch_size: user sequences per step for models trained on every position.
        lr_decay: learning-rate factor after each epoch without validation improvement.
        ema_epochs: horizon (epochs) of the weight average validated and kept (0: none).
        metric: validation metric for early stopping.
        seed: training seed.
        device: "cpu", "cuda" or "cuda:N".
        gather_negatives: under data-parallel training (torchrun, ``rechub train --nproc``)
            with an in-batch sampler, every rank's positives serve as negatives of every rank
            (item vectors all-gathered); no effect in one process.
        threads: intra-op threads per process; None picks them from the cores this process
            may use and the machine's load (:mod:`rechub_core.threads`), logged at the start.
        logits_dtype: precision of the training scores against 4,096 or more candidates
            shared by the batch (a full softmax's catalogue): "auto" (bfloat16 on a CPU
            with native bfloat16 matrix products, float32 elsewhere; logged), "float32" or
            "bfloat16" (:func:`rechub_core.trainer.resolve_logits_dtype`).
    """

    mode: int | None = attrs.field(default=None, validator=_mode)
    epochs: int | None = attrs.field(default=None, validator=_positive)
    batch_size: int | None = attrs.field(default=None, validator=_positive)
    lr: float | None = attrs.field(default=None, validator=_positive)
    weight_decay: float | None = attrs.field(default=None, validator=_non_negative)
    patience: int | None = attrs.field(default=None, validator=_positive)
    sequence_batch_size: int | None = attrs.field(default=None, validator=_positive)
    lr_decay: float | None = attrs.field(default=None, validator=_positive)
    ema_epochs: float | None = attrs.field(default=None, validator=_non_negative)
    metric: str = "ndcg@10"
    seed: int = 2022
    device: str = attrs.field(default="cpu", validator=_device)
    gather_negatives: bool = False
    threads: int | None = attrs.field(default=None, validator=_positive)
    logits_dtype: str = attrs.field(default="auto", validator=_logits_dtype)


@attrs.frozen
class RunConfig:
    """Everything ``rechub train`` needs; saved as ``config.toml`` in the run folder."""

    model: ComponentConfig
    data: DataConfig = attrs.field(factory=DataConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    loss: ComponentConfig | None = None
    sampler: ComponentConfig | None = None
    index: ComponentConfig = attrs.field(factory=lambda: ComponentConfig("faiss", {"kind": "flat"}))


converter = cattrs.Converter(forbid_extra_keys=True)


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


def _describe(exc: BaseException, type_: Any) -> str:
    """One line per problem; validators' messages say which field and why."""
    if isinstance(exc, _RangeError):
        return f"invalid value: {exc}"
    return cattrs.v.format_exception(exc, type_)


def config_from_dict(raw: dict[str, Any], where: str = "config") -> RunConfig:
    """Structure a plain dict into a :class:`RunConfig`, or raise :class:`ConfigError` whose
    message lists every problem as ``... @ $.path``."""
    try:
        return converter.structure(raw, RunConfig)
    except Exception as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            lines = cattrs.transform_error(exc, path="$", format_exception=_describe)
        else:
            lines = [str(exc)]
        if len(lines) == 1:  # one problem, one line
            raise ConfigError(f"invalid {where}: {lines[0]}") from None
        raise ConfigError(f"invalid {where}:\n  " + "\n  ".join(lines)) from None


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain-dict form of a config (None values dropped, so TOML can hold it)."""
    return _drop_none(converter.unstructure(cfg))


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read a ``.toml`` or ``.json`` run configuration."""
    p = Path(path)
    if p.is_dir():
        hint = f"e.g. {p / 'config.toml'}" if (p / "config.toml").is_file() else "a .toml file"
        raise ConfigError(f"config path {p} is a folder; pass the config file ({hint})")
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist; check the path")
    try:
        text = p.read_text(encoding="utf-8")
        raw = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot parse {p}: {exc}; fix the file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    return config_from_dict(raw, where=str(p))


def save_config(cfg: RunConfig, path: str | os.PathLike[str]) -> None:
    """Write a configuration atomically as TOML (``.toml``) or JSON (any other suffix)."""
    data = config_to_dict(cfg)
    p = Path(path)
    text = tomli_w.dumps(data) if p.suffix == ".toml" else json.dumps(data, indent=2) + "\n"
    write_text(p, text)
