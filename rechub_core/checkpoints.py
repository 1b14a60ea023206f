"""Checkpoint helpers of the trainer: the RNG state saved with each checkpoint, loading a
weights payload into a model, the disk space a run needs, and the one-off check of a loader
against a model before training, and the trainer's checkpoint methods (:class:`CheckpointMixin`)."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rechub_core.averaging import WeightAverage
from rechub_core.data import BatchLoader
from rechub_core.errors import CheckpointError, InputError
from rechub_core.io import load_torch, save_torch
from rechub_core.model import MatchModel

log = logging.getLogger("rechub.trainer")

#: version of the checkpoint payload layout (``model.pt`` and ``checkpoint.pt``)
FORMAT_VERSION = 1


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """Disk space (bytes) a run of ``model`` needs in its folder, estimated from the parameter
    bytes P: the checkpoint holds weights, best weights and Adam's two moments (4 P), its
    temporary copy while being replaced another 4 P, ``model.pt`` P, and the item index and
    other files are bounded by about P."""
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    return 10 * size


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Global RNG states (torch, CUDA, numpy, Python) as tensors and numbers, so that a
    ``weights_only`` load can read them back."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }
    if device.type == "cuda" and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    """Restore :func:`_rng_state`."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "numpy" in state:
        n = state["numpy"]
        keys = n["keys"].cpu().numpy().astype(np.uint32)
        np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if "cuda" in state and device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def load_weights(model: MatchModel, payload: Mapping[str, Any], source: Any = "") -> None:
    """Load a rechub weights payload (``model.pt`` or ``checkpoint.pt``) into ``model``.

    Raises :class:`CheckpointError`, naming both sides, when the payload was written in another
    checkpoint format (another rechub version), holds another model class, or does not fit
    the model's parameters. Keys saved from a ``DistributedDataParallel`` wrapper
    (``module.`` prefix) are accepted.
    """
    from rechub_core import __version__

    if not isinstance(payload, Mapping) or "state_dict" not in payload:
        raise CheckpointError(f"{source} is not a rechub checkpoint (no state_dict)")
    fmt = payload.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        raise CheckpointError(
            f"{source} has checkpoint format {fmt!r} (written by rechub "
            f"{payload.get('rechub_version', 'unknown')}); this rechub {__version__} reads "
            f"format {FORMAT_VERSION}; load it with the rechub version that wrote it, or retrain"
        )
    saved_class = payload.get("model_class")
    if saved_class and saved_class != type(model).__name__:
        raise CheckpointError(
            f"{source} holds weights of {saved_class} (rechub "
            f"{payload.get('rechub_version', 'unknown')}), not {type(model).__name__} (rechub "
            f"{__version__}); load it into the model it was trained with"
        )
    state = dict(payload["state_dict"])
    mine = model.state_dict()
    if (
        state
        and all(k.startswith("module.") for k in state)
        and not any(k.startswith("module.") for k in mine)
    ):
        state = {k[len("module.") :]: v for k, v in state.items()}
    missing = sorted(set(mine) - set(state))
    extra = sorted(set(state) - set(mine))
    wrong = sorted(k for k in set(mine) & set(state) if mine[k].shape != state[k].shape)
    if missing or extra or wrong:
        shapes = ", ".join(
            f"{k} saved {tuple(state[k].shape)} built {tuple(mine[k].shape)}" for k in wrong[:3]
        )
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: missing {missing[:3]}, unexpected "
            f"{extra[:3]}, shape mismatch [{shapes}]; it was trained with other features or "
            "other model arguments (a width such as embed_dim, a default that changed since): "
            "give the trained values in [model.params] of the run's config.toml, install the "
            "version that trained it, or retrain"
        )
    model.load_state_dict(state)


def validate_loader(model: MatchModel, loader: BatchLoader, where: str, with_items: bool) -> None:
    """Check a loader against the model once, before any training, so that bad data fails
    with a message naming the column instead of deep inside an epoch.

    Raises InputError for: a user feature (or, when ``with_items``, the item id) missing from
    the loader; ids outside a feature's vocabulary; NaN in a dense feature; rows whose history
    is empty (all padding).
    """
    from rechub_core.features import DenseFeature, SequenceFeature

    columns = dict(loader.tensors)
    if getattr(model, "trains_on_sequences", False) and loader.sequences is not None:
        columns.update(loader.sequences)
    needed = list(model.user_features)
    for f in needed:
        if f.name not in columns:
            if getattr(model, "trains_on_sequences", False) and f.name == model.history_feature:
                continue
            raise InputError(
                f"{where} has no column {f.name!r}, which the model's user features need "
                f"(it has: {', '.join(sorted(columns))}); add it or remove the feature"
            )
        col = columns[f.name]
        if isinstance(f, DenseFeature):
            if torch.isnan(col).any():
                raise InputError(
                    f"{where} column {f.name!r} contains NaN; fill or drop missing values"
                )
            continue
        lo, hi = int(col.min()), int(col.max())
        if lo < 0 or hi >= f.vocab_size:
            raise InputError(
                f"{where} column {f.name!r} has id {lo if lo < 0 else hi} outside "
                f"[0, {f.vocab_size}); encode ids with the same IdEncoder as the model's "
                "features, or raise vocab_size"
            )
        if isinstance(f, SequenceFeature) and col.dim() == 2:
            empty = int((col == 0).all(dim=1).sum())
            if empty:
                raise InputError(
                    f"{where} column {f.name!r} has {empty} rows with an empty history (all "
                    "padding); drop those rows (prepare() keeps users with >= min_interactions)"
                )
    if with_items and model.item_id_name not in columns and "seq_item_id" not in columns:
        raise InputError(
            f"{where} has no item id column {model.item_id_name!r}; each row needs its positive"
        )


class CheckpointMixin:
    """Checkpoint methods of :class:`~rechub_core.trainer.MatchTrainer`: the weights payload,
    and the per-epoch checkpoint (weights, optimizer, sampler, early-stopping state, history,
    RNG states) written atomically and read back on resume."""

    model: MatchModel
    optimizer: torch.optim.Optimizer
    sampler: Any
    history: list[dict[str, float]]
    best_metric: float
    best_epoch: int
    seed: int
    dist: Any
    device: torch.device
    average: WeightAverage | None

    def _weights_payload(self, state: Mapping[str, Tensor]) -> dict[str, Any]:
        from rechub_core import __version__

        return {
            "format": FORMAT_VERSION,
            "rechub_version": __version__,
            "model_class": type(self.model).__name__,
            "state_dict": dict(state),
        }

    def _save_checkpoint(
        self, path: Path, epoch: int, bad_epochs: int, best_state: Mapping[str, Tensor] | None
    ) -> None:
        payload = self._weights_payload(self.model.state_dict())
        payload.update(
            {
                "epoch": epoch,
                "bad_epochs": bad_epochs,
                "best_metric": self.best_metric,
                "best_epoch": self.best_epoch,
                "best_state": dict(best_state) if best_state is not None else None,
                "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.state_dict(),
                "average": self.average.state_dict() if self.average is not None else None,
                "history": self.history,
                "seed": self.seed,
                "world_size": self.dist.world_size,
                "rng": _rng_state(self.device),
            }
        )
        save_torch(path, payload)

    def _load_checkpoint(self, path: Path) -> tuple[int, int, dict[str, Tensor] | None]:
        payload = load_torch(path, map_location=self.device)
        load_weights(self.model, payload, path)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.sampler.load_state_dict(payload.get("sampler") or {})
        if self.average is not None:
            if payload.get("average") is None:
                raise CheckpointError(
                    f"{path} was written without a weight average (ema_epochs = 0) but this "
                    "run averages the weights; resume with the settings it was written with"
                )
            self.average.load_state_dict(payload["average"])
        elif payload.get("average") is not None:
            raise CheckpointError(
                f"{path} was written with a weight average (ema_epochs > 0) but this run does "
                "not average the weights; resume with the settings it was written with"
            )
        self.history = list(payload.get("history", []))
        self.best_metric = float(payload.get("best_metric", -math.inf))
        self.best_epoch = int(payload.get("best_epoch", -1))
        if payload.get("rng"):
            _set_rng_state(payload["rng"], self.device)
        saved_world = int(payload.get("world_size", 1))
        if saved_world != self.dist.world_size:
            log.warning(
                "%s was written by %d process(es), resuming with %d: later epochs shard the "
                "data differently than an unbroken run would",
                path,
                saved_world,
                self.dist.world_size,
            )
        log.info("resuming from %s after epoch %d", path, payload["epoch"])
        return int(payload["epoch"]) + 1, int(payload["bad_epochs"]), payload.get("best_state")
