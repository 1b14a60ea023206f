"""``MatchTrainer``: model-agnostic training, early stopping on a ranking metric, checkpoints,
embedding inference and ONNX export (names and arguments follow Torch-RecHub's).

One training step, for any model: encode the batch's users; ask the sampler for negatives;
encode the unique candidate items once; score with ``model.logits``; mask accidental hits;
apply the loss (with the sampler's ``log_q`` when the loss corrects for sampling bias).

Under ``torchrun`` the same trainer trains data-parallel (see :mod:`rechub_core.distributed`):
each rank reads its shard of every epoch, gradients are averaged by DDP, rank 0 validates and
writes checkpoints, and the other ranks follow its early-stopping decision.

Checkpoints (``checkpoint.pt``, one per epoch, written atomically) hold the weights, optimizer,
sampler, early-stopping state, history and the RNG states (torch, CUDA, numpy, Python). Shuffling
and negative sampling are reseeded from ``(seed, epoch)`` at every epoch, so a run resumed
from the checkpoint of epoch ``e`` trains epochs ``e + 1 ...`` exactly as an unbroken run would.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from rechub_core import distributed
from rechub_core.averaging import WeightAverage
from rechub_core.batch_loss import (
    LOW_PRECISION_MIN_CANDIDATES,
    SEQUENCE_COLUMN,
    BatchLossMixin,
    dtype_name,
)
from rechub_core.checkpoints import (
    FORMAT_VERSION,
    CheckpointMixin,
    checkpoint_bytes,
    load_weights,
    validate_loader,
)
from rechub_core.config import LOGITS_DTYPES
from rechub_core.data import BatchLoader
from rechub_core.errors import InputError
from rechub_core.evaluation import BEST_WEIGHTS, EvaluationMixin
from rechub_core.io import (
    ensure_writable_dir,
    remove_stale_temp_files,
    save_torch,
)
from rechub_core.losses import DEFAULT_LOSS_BY_MODE, CandidateLoss
from rechub_core.metrics import DEFAULT_KS
from rechub_core.model import MatchModel
from rechub_core.optim import build_optimizer
from rechub_core.samplers import (
    DEFAULT_SAMPLER_BY_MODE,
    InBatchSampler,
    Sampler,
)
from rechub_core.specs import TrainSettings

log = logging.getLogger("rechub.trainer")

#: seconds between progress lines logged inside an epoch
PROGRESS_LOG_SECONDS = 30.0


def _show_progress_logs() -> None:
    """``verbose=True`` asks for progress: when the application configured no logging at all,
    the trainer's INFO lines go to stderr (whether or not it is a terminal) instead of nowhere."""
    if not log.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("rechub: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


CHECKPOINT = "checkpoint.pt"


def _resolve(kind: str, value: Any, default: tuple[str, dict[str, Any]]) -> Any:
    from rechub_core.plugins import create

    if value is None:
        name, params = default
        return create(kind, name, **params)
    if isinstance(value, str):
        return create(kind, value)
    return value


def settings_from_keywords(
    mode: int,
    n_epoch: int,
    earlystop_patience: int,
    optimizer_params: Mapping[str, Any] | None,
    sequence_batch_size: int,
) -> tuple[TrainSettings, dict[str, Any]]:
    """The one place MatchTrainer's Torch-RecHub keywords map onto :class:`TrainSettings`.

    ``n_epoch`` -> ``epochs``, ``earlystop_patience`` -> ``patience``, ``optimizer_params``'
    ``lr`` / ``weight_decay`` -> ``lr`` / ``weight_decay`` (defaults 1e-3 / 0). Loss and
    sampler stay the mode's defaults unless the trainer is given them.

    Returns:
        The settings, and the optimizer keywords other than ``lr`` / ``weight_decay`` (e.g.
        ``betas``), passed to ``optimizer_fn`` as they are.
    """
    if n_epoch < 1:
        raise InputError(f"n_epoch must be >= 1, got {n_epoch}")
    if earlystop_patience < 1:
        raise InputError(f"earlystop_patience must be >= 1, got {earlystop_patience}")
    extra = dict(optimizer_params or {})
    settings = TrainSettings(
        mode=mode,
        lr=float(extra.pop("lr", 1e-3)),
        weight_decay=float(extra.pop("weight_decay", 0.0)),
        epochs=n_epoch,
        patience=earlystop_patience,
        sequence_batch_size=sequence_batch_size,
    )
    return settings, extra


def _settings_and_defaults(
    settings: TrainSettings | None, keywords: dict[str, Any]
) -> tuple[TrainSettings, dict[str, Any], tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """MatchTrainer's settings (given, or from its Torch-RecHub ``keywords``), the optimizer
    keywords besides lr / weight decay, and the default (name, params) of loss and sampler."""
    if settings is None:
        settings, optimizer_extra = settings_from_keywords(**keywords)
        loss_default: tuple[str, dict[str, Any]] = (DEFAULT_LOSS_BY_MODE[settings.mode], {})
        return settings, optimizer_extra, loss_default, DEFAULT_SAMPLER_BY_MODE[settings.mode]
    defaults = inspect.signature(MatchTrainer.__init__).parameters
    given = [k for k, v in keywords.items() if v != defaults[k].default]
    if given:
        raise InputError(
            f"MatchTrainer got settings= and {', '.join(given)}: pass the training settings "
            "one way (attrs.evolve(settings, ...) changes a field)"
        )
    loss_default = (
        settings.loss or DEFAULT_LOSS_BY_MODE[settings.mode],
        dict(settings.loss_params) if settings.loss else {},
    )
    return settings, {}, loss_default, (settings.sampler, dict(settings.sampler_params))


def resolve_logits_dtype(value: str, device: torch.device) -> tuple[torch.dtype, str]:
    """The dtype of the training scores against shared candidates, and why.

    ``"auto"``: bfloat16 on a CPU whose matrix products run natively in it (AVX512-BF16 or
    AMX: ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``), float32 on other CPUs and on
    CUDA. The scores are products of float32 vectors rounded to bfloat16 (8-bit mantissa)
    and summed in float32, then the loss runs in float32. On this project's 2-core AMD EPYC
    (AVX512-BF16) a SASRec epoch on Toys_and_Games (11,924 items) ran 1.38x faster with the
    same losses to 3 digits, and validation NDCG@10 stayed within 0.001 of float32's epoch by
    epoch (``benchmarks/results/defaults.md``, session 8).
    """
    if value not in LOGITS_DTYPES:
        raise InputError(
            f"logits_dtype must be one of {', '.join(repr(v) for v in LOGITS_DTYPES)}, got "
            f"{value!r}"
        )
    if value == "float32":
        return torch.float32, "asked for"
    if value == "bfloat16":
        return torch.bfloat16, "asked for"
    if device.type != "cpu":
        return torch.float32, f"auto: {device.type}"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        native = False
    if native:
        return torch.bfloat16, "auto: this CPU multiplies bfloat16 natively"
    return torch.float32, "auto: this CPU has no native bfloat16 matrix products"


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**31)


class MatchTrainer(BatchLossMixin, CheckpointMixin, EvaluationMixin):
    """Trains a :class:`~rechub_core.model.MatchModel`.

    Args:
        model: any model honouring the contract (``encode_user`` / ``encode_item``).
        mode: 0 point-wise (BCE), 1 pair-wise (BPR), 2 list-wise (softmax); decides the
            default loss and sampler; the model must support it.
        loss: a loss component, or its registered name (default: the mode's).
        sampler: a sampler component, or its registered name (default: the mode's).
        optimizer_fn: optimizer class; ``optimizer_params`` its keyword arguments
            (default ``{"lr": 1e-3, "weight_decay": 0}``).
        n_epoch: maximum epochs (``settings.epochs``).
        earlystop_patience: epochs without improvement of ``metric`` before stopping
            (``settings.patience``).
        device: "cpu", "cuda", "cuda:1", ...
        model_path: run folder for checkpoints; checked writable here, and for free space
            (see :func:`checkpoint_bytes`) when ``fit`` starts.
        seed: seeds initial weights' training noise, shuffling and sampling per epoch, so the
            same seed gives the same metrics and a resumed run the same weights.
        metric: validation metric watched for early stopping (a key of the metrics dict).
        ks: cut-offs of the reported metrics.
        grad_clip: max gradient norm (None: no clipping).
        verbose: show a progress bar and log epoch summaries.
        sequence_batch_size: users per batch for models trained on every position of their
            sequences (``trains_on_sequences = True``, e.g. SASRec).
        gather_negatives: under data-parallel training with an in-batch sampler (``in_batch``,
            ``mixed``), use every rank's positives as negatives (item vectors all-gathered
            across ranks; gradients reach each rank's own rows). No effect in one process.
        threads: intra-op threads: a count, ``"auto"`` (cores this process may use minus
            the load of other jobs, see :mod:`rechub_core.threads`; logged), or None to
            leave torch's setting as it is.
        sparse_embeddings: update embedding tables row-wise (only the rows a batch touched,
            :class:`~rechub_core.optim.RowwiseAdam`) instead of densely: True for every table,
            False never, None (default) by the rule: tables with at least
            ``rechub_core.optim.SPARSE_MIN_ROWS`` (50,000) rows. Only with the default
            ``optimizer_fn`` (Adam).
        logits_dtype: precision of the training scores against candidates shared by the
            batch, at least ``batch_loss.LOW_PRECISION_MIN_CANDIDATES`` (4,096) of them (a
            full softmax's catalogue; the loss itself, smaller products, per-row candidates
            and all evaluation stay float32): "auto", "float32" or "bfloat16", see
            :func:`resolve_logits_dtype`. Resolved here (``self.logits_dtype``) and logged.
        settings: a :class:`~rechub_core.specs.TrainSettings` instead of ``mode``,
            ``n_epoch``, ``earlystop_patience``, ``optimizer_params`` and
            ``sequence_batch_size`` (those keywords map onto one through
            :func:`settings_from_keywords`); its loss and sampler names are used unless
            ``loss`` / ``sampler`` are given.

    Data-parallel training: start the script (or ``rechub train``) with ``torchrun``; the
    trainer joins the process group (gloo on CPU, NCCL on CUDA). The loaders' ``batch_size``
    stays the **global** batch: each of the W ranks takes ``ceil(batch_size / W)`` rows per
    step from its own shard of the epoch.
    """

    def __init__(
        self,
        model: MatchModel,
        mode: int = 2,
        loss: CandidateLoss | str | None = None,
        sampler: Sampler | str | None = None,
        optimizer_fn: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_params: Mapping[str, Any] | None = None,
        n_epoch: int = 10,
        earlystop_patience: int = 5,
        device: str | torch.device = "cpu",
        model_path: str | os.PathLike[str] = "./runs/model",
        seed: int = 2022,
        metric: str = "ndcg@10",
        ks: Sequence[int] = DEFAULT_KS,
        grad_clip: float | None = None,
        verbose: bool = True,
        sequence_batch_size: int = 128,
        gather_negatives: bool = False,
        threads: int | str | None = None,
        sparse_embeddings: bool | None = None,
        settings: TrainSettings | None = None,
        logits_dtype: str = "auto",
    ) -> None:
        if not isinstance(model, MatchModel):
            raise InputError(
                f"model must be a rechub MatchModel (encode_user / encode_item), got "
                f"{type(model).__name__}"
            )
        keywords: dict[str, Any] = {
            "mode": mode,
            "n_epoch": n_epoch,
            "earlystop_patience": earlystop_patience,
            "optimizer_params": optimizer_params,
            "sequence_batch_size": sequence_batch_size,
        }
        model.check_mode(settings.mode if settings is not None else mode)
        settings, optimizer_extra, loss_default, sampler_default = _settings_and_defaults(
            settings, keywords
        )
        self.model = model
        #: what this trainer trains with (epochs, patience, lr, ...): the one settings type
        self.settings = settings
        self.mode = settings.mode
        self.loss_fn: CandidateLoss = _resolve("loss", loss, loss_default)
        self.sampler: Sampler = _resolve("sampler", sampler, sampler_default)
        if gather_negatives and not isinstance(self.sampler, InBatchSampler):
            raise InputError(
                "gather_negatives shares in-batch negatives across ranks, so it needs an "
                f"in-batch sampler ('in_batch' or 'mixed'), not {type(self.sampler).__name__}"
            )
        self.gather_negatives = gather_negatives
        self.dist, self.device = distributed.setup(device)
        if threads is not None:  # "auto" or a count; None leaves torch's setting alone
            from rechub_core.threads import apply_threads

            if threads != "auto" and not isinstance(threads, int):
                raise InputError(f"threads must be a count or 'auto', got {threads!r}")
            count = None if threads == "auto" else int(threads)
            processes = self.dist.world_size if self.dist.enabled else 1
            self.threads = apply_threads(count, processes)
        #: the dtype the training scores against shared candidates are computed in
        self.logits_dtype, why = resolve_logits_dtype(logits_dtype, self.device)
        if verbose and self.dist.is_main:
            log.info(
                "training scores against >= %d shared candidates in %s (%s); float32 below",
                LOW_PRECISION_MIN_CANDIDATES,
                dtype_name(self.logits_dtype),
                why,
            )
        self.model_path = ensure_writable_dir(model_path)
        self.seed = seed
        torch.manual_seed(seed)
        self.model.to(self.device)
        self.optimizer = build_optimizer(
            self.model,
            optimizer_fn,
            {"lr": settings.lr, "weight_decay": settings.weight_decay, **optimizer_extra},
            sparse_embeddings,
            sparse_gradients=not self.dist.enabled or self.dist.backend == "gloo",
        )
        self.metric = metric.lower()
        self.ks = tuple(ks)
        self.grad_clip = grad_clip
        self.verbose = verbose
        self.history: list[dict[str, float]] = []
        self.best_metric = -math.inf
        self.best_epoch = -1
        self._example: dict[str, Tensor] | None = None
        self._item_example: dict[str, Tensor] | None = None
        self._sequence_loader: BatchLoader | None = None
        self._last_batch_targets = 0
        self._last_epoch_samples = 0
        self._step: Callable[..., Tensor] = self.batch_loss  # DDP wraps it under torchrun
        #: the weights' moving average (``settings.ema_epochs``), made when fit() starts
        self.average: WeightAverage | None = None

    # --- training -----------------------------------------------------------------------------

    def _train_rows(self, loader: BatchLoader) -> BatchLoader:
        """The loader an epoch iterates: per-user sequences for models trained on every
        position (``trains_on_sequences``), else the loader's rows; under data-parallel
        training, this rank's shard of them."""
        rows = self._epoch_rows(loader)
        if not self.dist.enabled:
            return rows
        per_rank = distributed.per_rank_batch(rows.batch_size, self.dist.world_size)
        return rows.shard(self.dist.rank, self.dist.world_size, per_rank)

    def _epoch_rows(self, loader: BatchLoader) -> BatchLoader:
        if not getattr(self.model, "trains_on_sequences", False):
            return loader
        if loader.sequences is None:
            raise InputError(
                f"{type(self.model).__name__} trains on whole sequences but the loader has no "
                "per-user sequences; build it with loaders_from_prepared"
            )
        if (
            self._sequence_loader is None
            or self._sequence_loader.item_table is not loader.item_table
        ):
            # plain shuffled batches: length buckets (BatchLoader(length_buckets=...)) were
            # ~2x faster on Toys but weight a short user's positions more (each step's loss
            # is the mean over its positions) and cost Toys SASRec validation NDCG@10 (15
            # epochs: 0.0552 with, 0.0654 without, old code 0.0655), so they are off; batches
            # are still cut to their longest sequence in _step_users
            self._sequence_loader = BatchLoader(
                loader.sequences,
                self.settings.sequence_batch_size,
                shuffle=True,
                seed=loader.seed,
                item_table=loader.item_table,
                item_counts=loader.item_counts,
            )
        return self._sequence_loader

    def _train_epoch(self, loader: BatchLoader, epoch: int) -> tuple[float, float]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.model.train()
        item_loader = loader
        loader = self._train_rows(loader)
        loader.set_epoch(epoch)
        seed = _epoch_seed(self.seed, epoch) + self.dist.seed_offset()
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed + 1)
        self.sampler.on_epoch_start(lambda: self.all_item_vectors(item_loader))
        total, seen, start = 0.0, 0, time.perf_counter()
        last_log = start  # progress goes to logging too: the bar is invisible without a terminal
        columns = (
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:,.0f} samples/s"),
            TimeElapsedColumn(),
        )
        show = self.verbose and self.dist.is_main
        with Progress(*columns, transient=True, disable=not show) as progress:
            task = progress.add_task("train", total=len(loader), epoch=epoch, loss=0.0, rate=0.0)
            for batch in loader:
                if self._example is None:
                    self._example = {k: v[:2].clone() for k, v in batch.items()}
                    if SEQUENCE_COLUMN in self._example:
                        seq = self._example.pop(SEQUENCE_COLUMN)
                        self._example[self.model.history_feature] = seq[:, :-1]
                    self._item_example = loader.item_batch(torch.arange(1, min(3, loader.n_items)))
                loss = self._step(batch, loader, gen)
                if not torch.isfinite(loss):
                    raise InputError(
                        f"training loss became {loss.item()} at epoch {epoch}; lower the "
                        "learning rate or raise the temperature"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                self.optimizer.step()
                if self.average is not None:
                    self.average.update()
                n = self._last_batch_targets  # positives trained on (rows, or sequence positions)
                total += float(loss.detach()) * n
                seen += n
                rate = seen / max(time.perf_counter() - start, 1e-9)
                progress.update(task, advance=1, loss=total / seen, rate=rate)
                if show and time.perf_counter() - last_log >= PROGRESS_LOG_SECONDS:
                    last_log = time.perf_counter()
                    done = int(progress.tasks[0].completed)
                    log.info(
                        "epoch %d: %d/%d batches, loss %.4f, %.0f samples/s",
                        epoch,
                        done,
                        len(loader),
                        total / seen,
                        rate,
                    )
        elapsed = time.perf_counter() - start
        if self.dist.enabled:  # the epoch's loss and samples over all ranks
            total, summed = self.dist.all_sum([total, seen])
            seen = int(summed)
        self._last_epoch_samples = seen
        return total / max(seen, 1), elapsed

    def fit(
        self,
        train_dataloader: BatchLoader,
        val_dataloader: BatchLoader | None = None,
        resume: bool = False,
    ) -> list[dict[str, float]]:
        """Train; with a validation loader, early-stop on ``metric`` and restore the best weights.

        Args:
            train_dataloader: training rows with the item table (see ``MatchDataGenerator``).
            val_dataloader: evaluation loader with targets and seen items (optional).
            resume: continue from ``model_path/checkpoint.pt`` when it exists (after the
                epoch it was written at; temporary files of a killed run are removed first).
        Returns:
            One dict per epoch: epoch, loss, seconds, samples_per_s (positives per second over
            all ranks), lr (the learning rate the next epoch uses, after any
            ``settings.lr_decay``) and validation metrics. Under data-parallel training every
            rank returns the same history.
        """
        self._check_loaders(train_dataloader, val_dataloader)
        # a full disk fails now, not at the first checkpoint
        ensure_writable_dir(self.model_path, min_free_bytes=checkpoint_bytes(self.model))
        self.sampler.bind(train_dataloader.n_items, train_dataloader.item_counts)
        if self.settings.ema_epochs > 0:
            steps = len(self._train_rows(train_dataloader))
            self.average = WeightAverage(self.model, self.settings.ema_epochs, steps)
        start_epoch, bad_epochs, best_state = 0, 0, None
        ckpt_path = self.model_path / CHECKPOINT
        if self.verbose and self.dist.is_main:
            _show_progress_logs()
            log.info(
                "training up to %d epochs, %d batches each",
                self.settings.epochs,
                len(train_dataloader),
            )
        if resume:
            if self.dist.is_main:
                remove_stale_temp_files(self.model_path)
            self.dist.barrier()
            if ckpt_path.exists():
                start_epoch, bad_epochs, best_state = self._load_checkpoint(ckpt_path)
                if bad_epochs >= self.settings.patience:  # the run had already stopped early
                    start_epoch = self.settings.epochs
        if self.dist.enabled:
            self._step = self.dist.wrap(self.model, self.batch_loss)
        for epoch in range(start_epoch, self.settings.epochs):
            loss, seconds = self._train_epoch(train_dataloader, epoch)
            record: dict[str, float] = {
                "epoch": float(epoch),
                "loss": loss,
                "seconds": seconds,
                "samples_per_s": self._last_epoch_samples / max(seconds, 1e-9),
            }
            # validation, early stopping and the best weights use the average when there is one
            with self.average.swapped_in() if self.average else contextlib.nullcontext():
                improved = self._validate_epoch(record, epoch, val_dataloader, train_dataloader)
                if improved:
                    best_state = copy.deepcopy(self.model.state_dict())
            if improved:
                bad_epochs = 0
            else:
                bad_epochs += 1
                self._decay_lr()
            record["lr"] = self._lr()
            self.history.append(record)
            if self.verbose and self.dist.is_main:
                log.info(
                    "epoch %d  loss %.4f  %.1fs  %s",
                    epoch,
                    loss,
                    seconds,
                    f"val {self.metric} {record.get('val_' + self.metric, float('nan')):.4f}",
                )
            if self.dist.is_main:
                self._save_checkpoint(ckpt_path, epoch, bad_epochs, best_state)
            if bad_epochs >= self.settings.patience:
                break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        if self.dist.is_main:
            state = self.model.state_dict()
            save_torch(self.model_path / BEST_WEIGHTS, self._weights_payload(state))
        self.dist.barrier()  # every rank returns once the weights are on disk
        return self.history

    def _lr(self) -> float:
        """The learning rate the next epoch trains with (the first param group's)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _decay_lr(self) -> None:
        """Multiply every param group's learning rate by ``settings.lr_decay`` (after an epoch
        without validation improvement; kept in the optimizer's state, so a resumed run
        continues with it)."""
        if self.settings.lr_decay == 1.0:
            return
        for group in self.optimizer.param_groups:
            group["lr"] *= self.settings.lr_decay

    def _check_loaders(self, train: BatchLoader, val: BatchLoader | None) -> None:
        """Clear errors for loaders that do not fit the model (before any training)."""
        if train.item_table is None:
            raise InputError(
                "the training loader has no item table; build it with MatchDataGenerator"
            )
        if train.n_items != self.model.n_items:
            raise InputError(
                f"the item table has {train.n_items} rows but the model's item id "
                f"feature {self.model.item_id_name!r} has vocab_size {self.model.n_items}; "
                "build both from the same encoder"
            )
        validate_loader(self.model, train, "train_dataloader", with_items=True)
        if val is not None:
            validate_loader(self.model, val, "val_dataloader", with_items=False)

    def _validate_epoch(
        self,
        record: dict[str, float],
        epoch: int,
        val_loader: BatchLoader | None,
        train_loader: BatchLoader,
    ) -> bool:
        """Validation metrics of ``epoch`` into ``record`` (as ``val_*``); True when the
        watched metric improved (always True without a validation loader)."""
        if val_loader is None:
            return True
        metrics = self._validate(val_loader, train_loader)
        record.update({f"val_{k}": v for k, v in metrics.items()})
        value = metrics[self.metric]
        if not value > self.best_metric:  # NaN never improves
            return False
        self.best_metric, self.best_epoch = value, epoch
        return True

    def _validate(self, val_loader: BatchLoader, train_loader: BatchLoader) -> dict[str, float]:
        """Validation metrics; under data-parallel training computed once, on rank 0, and
        broadcast, so every rank takes the same early-stopping decision."""
        metrics: dict[str, float] | None = None
        error = ""
        if self.dist.is_main:
            metrics = self.evaluate(val_loader, train_loader)
            if self.metric not in metrics:
                error = f"metric {self.metric!r} is not one of {sorted(metrics)}"
        if self.dist.enabled:
            metrics, error = self.dist.broadcast_object((metrics, error))
        if error:
            raise InputError(error)
        assert metrics is not None
        return metrics


__all__ = [
    "BEST_WEIGHTS",
    "CHECKPOINT",
    "FORMAT_VERSION",
    "MatchTrainer",
    "checkpoint_bytes",
    "load_weights",
    "validate_loader",
]
