"""Run folders: train a registered model from a :class:`RunConfig`, save everything needed to
evaluate, export and serve it, and load it back.

A run folder holds ``config.toml`` (the effective settings), ``architecture.json`` (every
constructor argument of the model and its towers, defaults included: loading refuses when the
installed code would build another model), ``schema.json``,
``encoders.json`` (raw id <-> encoded id), ``model.pt`` (best weights) and ``checkpoint.pt``,
``metrics.json`` (test, validation, MostPop, per-epoch history), ``curve.png``, ``users.pt``
(each user's serving input: history = train + validation items, and seen items) and
``index.npz`` (the item index), so ``rechub recall RUN`` works on its own.

A train writes into ``RUN.staging`` and commits it over ``RUN`` with one atomic swap, under
the exclusive ``RUN.lock`` (see :mod:`rechub_core.run_folder`): readers see the old complete
run or the new complete run, never a mix, and a failed or killed train leaves ``RUN`` as it
was. ``config.toml`` is the staging folder's first file, so a killed run can be resumed from
it alone (``train_run(cfg, RUN, resume=True)`` or ``rechub train --resume --out RUN``, which
reads ``RUN.staging/config.toml``). Every value is checked before any work
(:func:`rechub_core.checks.check_run_config`). Under ``torchrun`` every rank runs
:func:`train_run`; rank 0 holds the lock, writes and commits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pandas as pd
import torch

from rechub_core import architecture, distributed, run_folder
from rechub_core.checks import check_run_config
from rechub_core.config import RunConfig, save_config
from rechub_core.data import BatchLoader, eval_loader, loaders_from_prepared
from rechub_core.errors import CheckpointError, InputError
from rechub_core.io import (
    check_output_dir,
    ensure_writable_dir,
    load_torch,
    save_torch,
    write_json,
)
from rechub_core.metrics import most_popular_metrics
from rechub_core.model import MatchModel
from rechub_core.plugins import create, get_spec
from rechub_core.preprocess import IdEncoder, PreparedData, prepare
from rechub_core.schema import DataSchema
from rechub_core.specs import ModelSpec, TrainSettings
from rechub_core.trainer import BEST_WEIGHTS, MatchTrainer, load_weights

log = logging.getLogger("rechub.runs")


def load_interactions(cfg: RunConfig) -> Any:
    """The :class:`~rechub_core.datasets.Interactions` a config names."""
    from rechub_core import datasets

    d = cfg.data
    source = d.source.lower()
    if source == "synthetic":
        from rechub_core.synthetic import synthetic_interactions

        return synthetic_interactions(
            n_users=d.synthetic_users, n_items=d.synthetic_items, seed=d.seed
        )
    if source in ("movielens-100k", "ml-100k", "movielens"):
        found = datasets.locate_movielens_100k(d.data_dir, download=d.download)
        return datasets.load_movielens_100k(found)
    path = Path(d.source)
    if not path.exists():
        raise InputError(
            f"--data {d.source!r} is neither 'synthetic', 'movielens-100k' nor an existing file"
        )
    if datasets.is_sequence_file(path):  # one line per user: "user item item ..."
        return datasets.load_sequence_file(path)
    return datasets.load_interactions_file(path, d.user_col, d.item_col, d.time_col)


def effective_settings(cfg: RunConfig, spec: ModelSpec) -> TrainSettings:
    """The model's documented defaults with the config's ``[train]`` (and ``[loss]``,
    ``[sampler]``) sections laid over them: what a run trains with."""
    d: TrainSettings = spec.train_defaults
    t = cfg.train
    mode = t.mode if t.mode is not None else d.mode
    if mode not in spec.modes:
        raise InputError(
            f"{spec.name} supports modes {list(spec.modes)}, not mode={mode}; change train.mode"
        )
    explicit_epochs = t.epochs is not None
    return attrs.evolve(
        d,
        mode=mode,
        loss=cfg.loss.name
        if cfg.loss
        else (d.loss if t.mode is None or t.mode == d.mode else None),
        loss_params=dict(cfg.loss.params) if cfg.loss else dict(d.loss_params),
        sampler=cfg.sampler.name if cfg.sampler else d.sampler,
        sampler_params=dict(cfg.sampler.params) if cfg.sampler else dict(d.sampler_params),
        lr=t.lr if t.lr is not None else d.lr,
        weight_decay=t.weight_decay if t.weight_decay is not None else d.weight_decay,
        batch_size=t.batch_size or d.batch_size,
        sequence_batch_size=t.sequence_batch_size or d.sequence_batch_size,
        lr_decay=t.lr_decay if t.lr_decay is not None else d.lr_decay,
        ema_epochs=t.ema_epochs if t.ema_epochs is not None else d.ema_epochs,
        epochs=t.epochs if explicit_epochs and t.epochs is not None else d.epochs,
        # a fixed epoch count means "train that long": no early stop before it
        patience=t.patience or (t.epochs if explicit_epochs and t.epochs else d.patience),
    )


def default_settings(spec: ModelSpec, epochs: int | None = None) -> TrainSettings:
    """A model's documented training settings (``epochs`` fixes the epoch count)."""
    from rechub_core.config import ComponentConfig, TrainConfig

    cfg = RunConfig(model=ComponentConfig(spec.name), train=TrainConfig(epochs=epochs))
    return effective_settings(cfg, spec)


def build_trainer(
    model: MatchModel,
    settings: TrainSettings,
    model_path: str | os.PathLike[str],
    seed: int = 2022,
    device: str = "cpu",
    metric: str = "ndcg@10",
    verbose: bool = False,
    gather_negatives: bool = False,
    threads: int | str | None = "auto",
    logits_dtype: str = "auto",
) -> MatchTrainer:
    """A :class:`MatchTrainer` configured by ``settings`` (loss, sampler, optimiser, epochs)."""
    loss = create("loss", settings.loss, **settings.loss_params) if settings.loss else None
    return MatchTrainer(
        model,
        settings=settings,
        loss=loss,
        sampler=create("sampler", settings.sampler, **settings.sampler_params),
        device=device,
        model_path=model_path,
        seed=seed,
        metric=metric,
        verbose=verbose,
        gather_negatives=gather_negatives,
        threads=threads,
        logits_dtype=logits_dtype,
    )


def build_model(spec: ModelSpec, schema: DataSchema, params: dict[str, Any]) -> MatchModel:
    """The model a spec builds for a data schema."""
    if spec.from_schema is None:
        raise InputError(
            f"model {spec.name} does not say how to build itself from data (no from_schema); "
            "build it in code and train it with MatchTrainer"
        )
    model = spec.from_schema(schema, **params)
    if not isinstance(model, MatchModel):
        raise InputError(
            f"{spec.name}.from_schema returned {type(model).__name__}, not a MatchModel"
        )
    return model


#: the constructor arguments the run's model was built with (:mod:`rechub_core.architecture`)
ARCHITECTURE_FILE = "architecture.json"


def check_architecture(model: MatchModel, run: Path, action: str) -> None:
    """Raise :class:`CheckpointError` when ``model`` (built from ``run``'s config by the
    installed code) differs from the model ``run`` trained (its ``architecture.json``), naming
    each differing argument: a plugin's changed default would otherwise load the weights into
    another model. Folders written before the file existed are not checked."""
    path = run / ARCHITECTURE_FILE
    if not path.is_file():
        return
    diffs = architecture.differences(_read_json(path), architecture.describe(model))
    if diffs:
        shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
        raise CheckpointError(
            f"cannot {action} {os.fspath(run)!r}: the installed code builds another model than "
            f"the one trained there ({shown}). Give the trained values in [model.params] of "
            f"{os.fspath(run / 'config.toml')!r}, install the plugin version that trained it, "
            "or retrain"
        )


def _plot_curve(history: list[dict[str, float]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rechub_core.io import atomic_path

    epochs = [int(h["epoch"]) for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    key = f"val_{metric}"
    if any(key in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(epochs, [h.get(key, np.nan) for h in history], "s-", color="tab:red")
        ax2.set_ylabel(f"validation {metric}", color="tab:red")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


@attrs.frozen
class RunResult:
    """What :func:`train_run` returns."""

    path: Path
    metrics: dict[str, float]
    mostpop: dict[str, float]
    history: list[dict[str, float]]
    model: MatchModel
    data: PreparedData


def effective_config(cfg: RunConfig, settings: TrainSettings) -> RunConfig:
    """``cfg`` with the training settings it left to the model's defaults filled in."""
    return attrs.evolve(
        cfg,
        train=attrs.evolve(
            cfg.train,
            mode=settings.mode,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            lr=settings.lr,
            weight_decay=settings.weight_decay,
            patience=settings.patience,
            sequence_batch_size=settings.sequence_batch_size,
            lr_decay=settings.lr_decay,
            ema_epochs=settings.ema_epochs,
        ),
    )


def train_run(
    cfg: RunConfig,
    out: str | os.PathLike[str],
    verbose: bool = True,
    resume: bool = False,
    force: bool = False,
) -> RunResult:
    """Train ``cfg.model`` on ``cfg.data`` under the protocol and commit a complete run folder.

    Args:
        cfg: the run configuration (checked whole before anything is read or written).
        out: the run folder; written through ``OUT.staging`` and swapped in when complete.
        verbose: progress bars and epoch logs.
        resume: continue from the checkpoint a killed train left in ``OUT.staging``.
        force: replace a non-empty ``out`` that is not a rechub run (its files are moved aside
            to ``OUT.replaced-TIME``).
    Returns:
        The result; under data-parallel training, ranks other than 0 get empty metrics.
    Raises:
        RechubError: a bad value, another writer holding ``OUT.lock`` (its pid named), data
            that cannot be used, or a write that fails; ``out`` is then left as it was.
    """
    ctx, _ = distributed.setup(cfg.train.device)
    spec = check_run_config(cfg)
    target = Path(out)
    if ctx.is_main:
        check_output_dir(target, "run folder --out")
        run_folder.check_target(target, force)
    # data and model first: a bad log or parameter fails before anything is written
    data = prepare(load_interactions(cfg), cfg.data.max_len, cfg.data.min_interactions)
    if ctx.is_main:
        for name, enc in data.encoders.items():
            log.info("%s ids read as %s", name, enc.id_type)
    torch.manual_seed(cfg.train.seed)
    schema = DataSchema.from_prepared(data)
    model = build_model(spec, schema, dict(cfg.model.params))
    with contextlib.ExitStack() as stack:
        error = ""
        if ctx.is_main:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                stack.enter_context(run_folder.RunLock(target))
                run_folder.check_target(target, force)  # again: another writer may have won
                run_folder.prepare_staging(target, resume)
            except CheckpointError as exc:
                if not ctx.enabled:
                    raise
                error = str(exc)
        if ctx.enabled:  # the other ranks wait for the staging folder, or stop with rank 0
            error = ctx.broadcast_object(error)
            if error:
                raise CheckpointError(error)
        staging = run_folder.staging_path(target)
        result = _train_into(cfg, spec, data, schema, model, staging, verbose, resume)
        if ctx.is_main:
            run_folder.commit(staging, target)
    return attrs.evolve(result, path=target)


def _train_into(
    cfg: RunConfig,
    spec: ModelSpec,
    data: PreparedData,
    schema: DataSchema,
    model: MatchModel,
    run: Path,
    verbose: bool,
    resume: bool,
) -> RunResult:
    """Train ``model`` (built for ``schema``, the schema of ``data``) and write every file of
    the run into the staging folder ``run``."""
    ctx, _ = distributed.setup(cfg.train.device)
    run = ensure_writable_dir(run, "run folder", min_free_bytes=0)  # a full disk fails now
    settings = effective_settings(cfg, spec)
    effective = effective_config(cfg, settings)
    if ctx.is_main:  # first, so that a killed run can be resumed from its folder alone
        if resume:  # the resumed checkpoint must belong to the model built now
            check_architecture(model, run, "resume")
        save_config(effective, run / "config.toml")
        write_json(run / ARCHITECTURE_FILE, architecture.describe(model))
    train_dl, val_dl, test_dl = loaders_from_prepared(data, settings.batch_size, cfg.train.seed)
    trainer = build_trainer(
        model,
        settings,
        run,
        seed=cfg.train.seed,
        device=cfg.train.device,
        metric=cfg.train.metric,
        verbose=verbose,
        gather_negatives=cfg.train.gather_negatives,
        threads=cfg.train.threads or "auto",
        logits_dtype=cfg.train.logits_dtype,
    )
    history = trainer.fit(train_dl, val_dl, resume=resume)
    if not ctx.is_main:  # rank 0 evaluates and writes the run folder
        return RunResult(run, {}, {}, history, model, data)
    metrics = trainer.evaluate(test_dl)
    t = data.test
    mostpop = most_popular_metrics(data.item_counts, t.target, t.seen_indptr, t.seen_indices)
    write_json(run / "schema.json", schema.to_dict())
    write_json(run / "encoders.json", {k: e.to_dict() for k, e in data.encoders.items()})
    write_json(
        run / "metrics.json",
        {
            "model": spec.name,
            "test": metrics,
            "mostpop_test": mostpop,
            "best_epoch": trainer.best_epoch,
            # what the scores were computed in, not the setting: float32 below the bound
            "logits_dtype": trainer.scored_dtype,
            "history": history,
            "settings": attrs.asdict(settings),
        },
    )
    _plot_curve(history, cfg.train.metric, run / "curve.png")
    save_torch(
        run / "users.pt",
        {
            "inputs": {k: torch.as_tensor(v) for k, v in t.users.items()},
            "target": torch.as_tensor(t.target),
            "seen_indptr": torch.as_tensor(t.seen_indptr),
            "seen_indices": torch.as_tensor(t.seen_indices),
            "items": {k: torch.as_tensor(v) for k, v in data.items.items()},
            "titles": [str(x) for x in data.item_titles] if data.item_titles is not None else [],
        },
    )
    build_index(trainer, test_dl, cfg, run)
    return RunResult(run, metrics, mostpop, history, model, data)


INDEX_FILE = "index.npz"


def build_index(
    trainer: MatchTrainer,
    loader: BatchLoader,
    cfg: RunConfig,
    run: Path,
    batch_size: int = 65_536,
) -> None:
    """Encode every item and save the configured index (``cfg.index``, any registered index)
    as ``run / index.npz``; the file records the index name and the package providing it.

    Item vectors are produced ``batch_size`` items at a time and streamed into the index
    (:meth:`~rechub_core.index.Index.build_from_batches`), so peak memory is the index plus
    one batch (an index without a streaming backend collects the batches first).
    """
    from rechub_core.index import Index

    index = create("index", cfg.index.name, **cfg.index.params)
    if not isinstance(index, Index):
        raise InputError(
            f"index {cfg.index.name!r} built a {type(index).__name__}, not a "
            "rechub_core.index.Index; its plugin must register an Index subclass"
        )
    n = loader.n_items - 1  # real items; row 0 is padding
    batches = (
        (vectors.numpy(), ids.numpy())
        for ids, vectors in trainer.iter_item_vectors(loader, batch_size, start=1)
    )
    index.build_from_batches(batches, n_total=n)
    index.save(run / INDEX_FILE)


def load_run_index(run: str | os.PathLike[str], cfg: RunConfig) -> Any:
    """The item index of a run folder, read by the index its config names (any registered
    index; a missing plugin raises an error naming the package to install)."""
    from rechub_core.index import load_index

    return load_index(Path(run) / INDEX_FILE, name=cfg.index.name)


@attrs.define
class LoadedRun:
    """A run folder loaded for evaluation, export and serving."""

    path: Path
    config: RunConfig
    model: MatchModel
    schema: DataSchema
    encoders: dict[str, IdEncoder]
    users: dict[str, Any]
    #: the commit marker's id when loaded (None: a folder from before commit markers)
    run_id: str | None = None

    def check_current(self) -> None:
        """Raise :class:`CheckpointError` when a train committed over the folder after it was
        loaded; call it after reading another file of the run (e.g. its index) so that the
        model and that file surely belong to one run."""
        if run_folder.run_id(self.path) != self.run_id:
            raise CheckpointError(
                f"{self.path} was replaced by a newer run while it was being read; load it again"
            )

    def user_loader(self, batch_size: int = 1024) -> BatchLoader:
        """Evaluation loader over every user's serving input (targets = test items)."""
        from rechub_core.preprocess import EvalSplit

        u = self.users
        split = EvalSplit(
            users={k: v.numpy() for k, v in u["inputs"].items()},
            target=u["target"].numpy(),
            seen_indptr=u["seen_indptr"].numpy(),
            seen_indices=u["seen_indices"].numpy(),
        )
        return eval_loader(split, {k: v.numpy() for k, v in u["items"].items()}, batch_size)

    def trainer(self) -> MatchTrainer:
        """A trainer around the loaded model (for evaluate / export / inference)."""
        return MatchTrainer(
            self.model, mode=self.model.supported_modes[0], model_path=self.path, verbose=False
        )

    def example(self, side: str) -> dict[str, torch.Tensor]:
        """Two rows of real inputs for ``side`` ("user" or "item"), for ONNX export."""
        if side == "user":
            return {k: v[:2] for k, v in self.users["inputs"].items()}
        return {k: v[1:3] for k, v in self.users["items"].items()}


def load_run(path: str | os.PathLike[str]) -> LoadedRun:
    """Load a complete run folder written by :func:`train_run`.

    Raises:
        CheckpointError: no complete run at ``path`` (an interrupted train is named with the
            ``rechub train --resume`` that finishes it), or a damaged file (named).
    """
    run = Path(path)
    for attempt in range(3):  # a commit between our reads: load the new run again
        rid = run_folder.check_complete(run)
        try:
            loaded = _load_files(run)
        except CheckpointError:
            if attempt < 2 and run_folder.run_id(run) != rid:
                continue
            raise
        if run_folder.run_id(run) == rid:
            loaded.run_id = rid
            return loaded
    raise CheckpointError(f"{run} was replaced three times while loading it; try again")


def _read_json(path: Path, parse: Any = None) -> Any:
    """``path``'s JSON, passed through ``parse``; any failure is a CheckpointError naming it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return raw if parse is None else parse(raw)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; retrain the run") from None
    except Exception as exc:  # unreadable, not JSON, or JSON of the wrong shape
        raise CheckpointError(
            f"{path} is damaged ({type(exc).__name__}: {exc}); retrain the run with "
            f"`rechub train --out {path.parent}`"
        ) from None


def _load_files(run: Path) -> LoadedRun:
    from rechub_core.config import load_config

    cfg = load_config(run / "config.toml")
    schema = _read_json(run / "schema.json", DataSchema.from_dict)
    encoders = _read_json(
        run / "encoders.json", lambda raw: {k: IdEncoder.from_dict(v) for k, v in raw.items()}
    )
    spec = get_spec("model", cfg.model.name)
    assert isinstance(spec, ModelSpec)
    model = build_model(spec, schema, dict(cfg.model.params))
    check_architecture(model, run, "load")
    load_weights(model, load_torch(run / BEST_WEIGHTS), run / BEST_WEIGHTS)
    model.eval()
    return LoadedRun(run, cfg, model, schema, encoders, load_torch(run / "users.pt"))


def recall(loaded: LoadedRun, raw_user_ids: list[Any] | None, k: int = 20) -> pd.DataFrame:
    """Top-``k`` items for users (raw ids; None = every user), seen items excluded.

    Returns:
        DataFrame ``user_id, rank, item_id, score`` (+ ``title`` when known), raw ids.
    """
    if k <= 0:
        raise InputError(f"k must be positive, got {k}")
    index = load_run_index(loaded.path, loaded.config)
    loaded.check_current()  # the index and the loaded model are of one run
    user_enc = loaded.encoders["user_id"]
    inputs = loaded.users["inputs"]
    codes_in_order = inputs["user_id"]  # (U,) encoded ids of the saved rows
    row_of = {int(c): i for i, c in enumerate(codes_in_order.tolist())}
    if raw_user_ids is None:
        rows = np.arange(len(codes_in_order))
    else:
        try:
            codes = user_enc.transform(np.asarray(raw_user_ids))
        except InputError:  # its advice is for training; say what to do for recall
            some = ", ".join(repr(x) for x in user_enc.inverse(codes_in_order[:3].numpy()).tolist())
            raise InputError(
                f"user id(s) {raw_user_ids[:3]!r} not in this run: recall serves the users it "
                f"was trained on ({len(codes_in_order)} users, e.g. {some}); pass one of those "
                "(--users all lists every user's top-K), or retrain on data that has this user"
            ) from None
        missing = [r for r, c in zip(raw_user_ids, codes, strict=True) if int(c) not in row_of]
        if missing:
            raise InputError(
                f"user {missing[0]!r} has no serving history in this run (dropped by the "
                "protocol: fewer than min_interactions)"
            )
        rows = np.array([row_of[int(c)] for c in codes])
    batch = {name: v[torch.as_tensor(rows)] for name, v in inputs.items()}
    with torch.no_grad():
        vectors = loaded.model.encode_user(batch).numpy().astype(np.float32)
    indptr = loaded.users["seen_indptr"].numpy()
    indices = loaded.users["seen_indices"].numpy()
    exclude = [indices[indptr[r] : indptr[r + 1]].tolist() for r in rows]
    ids, scores = index.search(vectors, k, exclude=exclude)
    n = len(rows)
    flat_ids = ids.reshape(-1)
    valid = flat_ids > 0
    user_raw = user_enc.inverse(codes_in_order[torch.as_tensor(rows)].numpy())
    frame = pd.DataFrame(
        {
            "user_id": np.repeat(user_raw, k)[valid],
            "rank": np.tile(np.arange(1, k + 1), n)[valid],
            "item_id": loaded.encoders["item_id"].inverse(flat_ids[valid]),
            "score": scores.reshape(-1)[valid],
        }
    )
    titles = loaded.users.get("titles") or []
    if titles:
        frame["title"] = [titles[i] for i in flat_ids[valid]]
    return frame
