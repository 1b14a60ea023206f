"""Conformance kit: does a retrieval model honour rechub's model contract?

Every check builds a fresh model (fixed seed) on small synthetic data and runs on the CPU, so a
model takes a few seconds. Use it from code::

    from rechub_core.testing import check_model

    report = check_model("MyModel")  # a registered name, a ModelSpec, or a factory(schema)
    report.raise_for_failures()      # ConformanceError naming each failed check and its fix

or from pytest, by opting in with ``pytest -p rechub_core.testing`` or
``pytest_plugins = ["rechub_core.testing"]`` in a test module, through the fixture::

    def test_my_model_conforms(rechub_conformance):
        rechub_conformance("MyModel")

The checks, in order (:data:`CHECKS`):

* ``shapes``: ``encode_user`` gives ``(B, D)`` (``(B, K, D)`` when ``multi_interest``),
  ``encode_item`` gives ``(N, D)`` with the same D, finite float32, and ``logits`` ``(B, N)``.
* ``padding``: appending and prepending padding ids (0) to a user sequence feature leaves the
  user vectors unchanged (histories are right-padded, and left padding must not fool a model
  either; ``pad_sides`` narrows it); skipped when the user side has no sequences.
* ``recency``: in a history longer than any model's window, changing only the newest item
  changes the user vectors (histories are oldest first and a model keeps the newest items:
  ``docs/protocol.md``); skipped when the user side has no sequences.
* ``batch``: in eval mode a row encoded alone equals the same row inside a batch, and encoding
  twice gives the same vectors (users and items).
* ``steps``: ``encode_user_steps`` gives ``(B, L, D)`` (or ``(B, L, K, D)``), is causal, and
  its state at a position equals ``encode_user`` of the history up to that position (at the
  last real one: of the whole history); skipped when not implemented.
* ``gradients``: one training loss (the model's train_defaults loss and sampler, computed by
  ``MatchTrainer.batch_loss`` exactly as in training) reaches every trainable parameter.
* ``state_dict``: weights saved and loaded the way run folders do (``weights_only=True``) into
  a model built with another seed give identical vectors.
* ``onnx``: both towers export with :func:`rechub_core.export.export_tower` and match PyTorch
  (max abs diff < 1e-4) on other batch sizes (1 included) and, for sequences, another length.
* ``training``: a few epochs of ``MatchTrainer.fit`` with the model's train_defaults lower the
  training loss, and full-ranking metrics afterwards are finite.

Item indexes have their own checks: :func:`check_index` (fixture ``rechub_index_conformance``).

The module imports pytest (the ``test`` extra), for its fixtures. PYTEST_DONT_REWRITE: the
kit raises its own errors, so pytest need not rewrite it, and a test
module may import it before ``pytest_plugins`` registers it without a warning.
"""

from __future__ import annotations

import contextlib
import functools
import math
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import torch
from torch import Tensor

from rechub_core.errors import RechubError
from rechub_core.features import SequenceFeature
from rechub_core.model import MatchModel
from rechub_core.preprocess import PreparedData
from rechub_core.schema import DataSchema
from rechub_core.specs import ModelSpec, TrainDefaults

if TYPE_CHECKING:
    from rechub_core.runs import TrainSettings
    from rechub_core.trainer import MatchTrainer

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

#: users and items in the shape and batch checks: different, so that a mixed-up axis shows
USER_ROWS, ITEM_ROWS = 5, 7
#: largest difference accepted between computations that must agree (float32 on CPU)
ATOL = 1e-5
#: length of the ``recency`` check's histories: longer than the window of any model built on
#: the kit's data (its histories are 10 wide), so a model reading the oldest items misses the
#: newest one
LONG_HISTORY = 120
#: largest difference accepted between onnxruntime and PyTorch (DESIGN.md)
ONNX_TOLERANCE = 1e-4
#: the ``training`` check wants the last epoch's loss at least this fraction below the first's:
#: enough to tell learning from float noise in a loss that does not move (every shipped model
#: drops by more than 25% in the kit's 3 epochs)
MIN_LOSS_DROP = 1e-4

ModelSource = str | ModelSpec | Callable[..., MatchModel]


class ConformanceError(RechubError):
    """A model failed the conformance kit; the message lists each failed check and its fix."""


class CheckFailed(Exception):
    """Raised inside a check: ``problem`` says what was observed, ``fix`` what to change."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


class CheckSkipped(Exception):
    """Raised inside a check that does not apply to the model (the reason is the message)."""


@attrs.frozen
class CheckResult:
    """The outcome of one check.

    Attributes:
        check: its name (one of :data:`CHECKS`, or "build" when the model could not be built;
            the checks are then "skipped").
        status: "passed", "failed" or "skipped".
        message: for a failure, one line naming the model, the check, what was wrong and what
            to fix; for a skip, why it does not apply.
        seconds: time it took.
    """

    check: str
    status: str
    message: str = ""
    seconds: float = 0.0


@attrs.frozen
class ConformanceReport:
    """What :func:`check_model` found for one model."""

    model: str
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [r for r in self.results if r.status == "failed"]

    def result(self, check: str) -> CheckResult:
        """The result of ``check``."""
        for r in self.results:
            if r.check == check:
                return r
        raise KeyError(f"check {check!r} did not run; ran: {[r.check for r in self.results]}")

    def __str__(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in ("passed", "failed")}
        skipped = len(self.results) - counts["passed"] - counts["failed"]
        lines = [
            f"rechub conformance of {self.model}: {counts['passed']} passed, "
            f"{counts['failed']} failed, {skipped} skipped"
        ]
        for r in self.results:
            detail = f": {r.message}" if r.message else ""
            lines.append(f"  {r.status.upper():7} {r.check} ({r.seconds:.2f}s){detail}")
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise :class:`ConformanceError` listing every failed check (and its fix)."""
        if self.failures:
            raise ConformanceError("\n".join(r.message for r in self.failures))


# --------------------------------------------------------------------------- data and batches


@functools.lru_cache(maxsize=4)
def conformance_data(
    n_users: int = 64, n_items: int = 40, max_len: int = 10, seed: int = 0
) -> PreparedData:
    """Small seeded synthetic data under the protocol (user profile and item side columns,
    histories of different lengths), shared by every check; cached per arguments."""
    from rechub_core.datasets import synthetic_interactions
    from rechub_core.preprocess import prepare

    events = synthetic_interactions(
        n_users=n_users, n_items=n_items, n_clusters=4, min_len=5, max_len=14, seed=seed
    )
    return prepare(events, max_len=max_len)


def _rows(columns: Mapping[str, Any], start: int, stop: int) -> dict[str, Tensor]:
    return {k: torch.as_tensor(v[start:stop]) for k, v in columns.items()}


def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


@attrs.define
class _Context:
    """What every check needs: how to build the model, the data, a scratch folder."""

    label: str
    spec: ModelSpec
    params: dict[str, Any]
    data: PreparedData
    workdir: Path
    epochs: int
    pad_sides: tuple[str, ...] = ("right", "left")
    #: the spec stands in for a bare factory (its modes and default mode follow the model)
    stand_in: bool = False

    @property
    def schema(self) -> DataSchema:
        return DataSchema.from_prepared(self.data)

    def build(self, seed: int = 0) -> MatchModel:
        from rechub_core.runs import build_model

        torch.manual_seed(seed)
        return build_model(self.spec, self.schema, dict(self.params))

    def users(self, rows: int = USER_ROWS) -> dict[str, Tensor]:
        return _rows(self.data.test.users, 0, rows)

    def items(self, rows: int = ITEM_ROWS) -> dict[str, Tensor]:
        return _rows(self.data.items, 1, rows + 1)

    def trainer(
        self, model: MatchModel, folder: str, epochs: int = 1
    ) -> tuple[MatchTrainer, TrainSettings]:
        """A trainer configured as ``rechub train`` would (the spec's train_defaults), with
        small batches: several optimiser steps an epoch on the small data."""
        from rechub_core.runs import build_trainer, default_settings

        settings = default_settings(self.spec, epochs=epochs)
        settings = attrs.evolve(
            settings,
            batch_size=min(settings.batch_size, 128),
            sequence_batch_size=min(settings.sequence_batch_size, 16),
        )
        trainer = build_trainer(model, settings, self.workdir / folder, seed=0, verbose=False)
        return trainer, settings


# --------------------------------------------------------------------------- the checks


def _check_shapes(ctx: _Context) -> None:
    model = ctx.build().eval()
    users, items = ctx.users(), ctx.items()
    with torch.no_grad():
        u = model.encode_user(users)
        v = model.encode_item(items)
    for side, out in (("encode_user", u), ("encode_item", v)):
        if not isinstance(out, Tensor):
            raise CheckFailed(
                f"{side} returned {type(out).__name__}, not a tensor",
                f"return the vectors as one torch.Tensor from {side}",
            )
        if out.dtype != torch.float32:
            raise CheckFailed(
                f"{side} returned dtype {out.dtype}",
                "return float32 vectors (the dtype of the embedding tables)",
            )
    expected_user = "(B, K, D)" if model.multi_interest else "(B, D)"
    if u.dim() != (3 if model.multi_interest else 2) or u.shape[0] != USER_ROWS:
        hint = (
            "set the class attribute multi_interest = True for (B, K, D) interests"
            if u.dim() == 3
            else "return one row per user: (B, D), or (B, K, D) with multi_interest = True"
        )
        if u.dim() == 3 and u.shape[1] == 1 and not model.multi_interest:
            hint = (  # one interest with a leftover axis, e.g. from attention over (B, 1, L)
                "squeeze the interest axis (return vectors.squeeze(1), shape (B, D)); only if "
                "the model really has K interests, set multi_interest = True"
            )
        raise CheckFailed(
            f"encode_user on a batch of {USER_ROWS} users returned {tuple(u.shape)}, expected "
            f"{expected_user} (multi_interest={model.multi_interest})",
            hint,
        )
    if v.dim() != 2 or v.shape[0] != ITEM_ROWS:
        raise CheckFailed(
            f"encode_item on {ITEM_ROWS} items returned {tuple(v.shape)}, expected (N, D)",
            "return one vector per item row: (N, D)",
        )
    if u.shape[-1] != v.shape[-1]:
        raise CheckFailed(
            f"user vectors have D={u.shape[-1]} but item vectors D={v.shape[-1]}",
            "make both towers end in the same width (scores are dot products)",
        )
    for side, out in (("encode_user", u), ("encode_item", v)):
        if not torch.isfinite(out).all():
            raise CheckFailed(
                f"{side} returned NaN or inf",
                "guard divisions and normalisations (e.g. layers.masked_mean, l2_normalize "
                "with eps) and masked softmax rows that see nothing",
            )
    with torch.no_grad():
        logits = model.logits(u, v)
    if tuple(logits.shape) != (USER_ROWS, ITEM_ROWS):
        raise CheckFailed(
            f"logits(users, items) returned {tuple(logits.shape)}, expected "
            f"({USER_ROWS}, {ITEM_ROWS})",
            "do not override MatchModel.logits, or keep its (B, C) contract",
        )


def _user_sequences(model: MatchModel, batch: Mapping[str, Tensor]) -> list[str]:
    return [
        f.name
        for f in model.user_features
        if isinstance(f, SequenceFeature) and f.name in batch and batch[f.name].dim() == 2
    ]


def _check_padding(ctx: _Context) -> None:
    model = ctx.build().eval()
    users = ctx.users()
    names = _user_sequences(model, users)
    if not names:
        raise CheckSkipped("the user side has no sequence features")
    for name in names:
        seq = users[name]  # (B, L), right-padded
        width = seq.shape[1]
        if width < 2:
            continue
        extra = min(3, width - 1)
        # a shorter history (its oldest items) padded back to the full width: the padded
        # form stays within the length the model was built for
        short = dict(users)
        short[name] = seq[:, : width - extra]  # (B, L - extra)
        zeros = seq.new_zeros(seq.shape[0], extra)  # (B, extra)
        for side in ctx.pad_sides:
            padded = dict(users)
            parts = [short[name], zeros] if side == "right" else [zeros, short[name]]
            padded[name] = torch.cat(parts, dim=1)  # (B, L)
            with torch.no_grad():
                diff = _max_diff(model.encode_user(short), model.encode_user(padded))
            if not diff <= ATOL:
                where = "appending" if side == "right" else "prepending"
                raise CheckFailed(
                    f"{where} {extra} padding ids (0) to {name!r} changed the user vectors by "
                    f"{diff:.2e} (max abs diff)",
                    "mask padding positions out of every pooling, attention and recurrence "
                    "(EmbeddingLayer.sequence gives the mask; layers.masked_mean; "
                    "layers.gather_last for the last real item) instead of reading fixed "
                    "columns, and read ordered histories compacted (rechub_core.history: "
                    "HistoryEncoder or compact; docs/protocol.md)",
                )


def _check_recency(ctx: _Context) -> None:
    model = ctx.build().eval()
    users = ctx.users()
    names = _user_sequences(model, users)
    if not names:
        raise CheckSkipped("the user side has no sequence features")
    vocab = {f.name: getattr(f, "vocab_size", 2) for f in model.user_features}
    gen = torch.Generator().manual_seed(0)
    for name in names:
        if vocab[name] < 3:
            continue  # one real id: nothing to change the newest item to
        rows = users[name].shape[0]
        long = torch.randint(1, vocab[name], (rows, LONG_HISTORY), generator=gen)  # (B, N)
        newest = long[:, -1:] % (vocab[name] - 1) + 1  # (B, 1): another real id
        changed = torch.cat([long[:, :-1], newest], dim=1)  # (B, N)
        with torch.no_grad():
            before = model.encode_user({**users, name: long})
            after = model.encode_user({**users, name: changed})
        if not _max_diff(before, after) > ATOL:
            raise CheckFailed(
                f"in {LONG_HISTORY}-item histories {name!r}, changing only the newest (last) "
                "item did not change any user vector: the model reads the oldest items",
                "keep the newest max_len items, not the first ones: histories are oldest "
                "first, right-padded with 0 (docs/protocol.md); read them through "
                "rechub_core.history (HistoryEncoder, or compact(seq, max_len))",
            )


def _check_batch(ctx: _Context) -> None:
    model = ctx.build().eval()
    for side, batch, encode in (
        ("user", ctx.users(), model.encode_user),
        ("item", ctx.items(), model.encode_item),
    ):
        with torch.no_grad():
            full = encode(batch)
            again = encode(batch)
            if _max_diff(full, again) > 0:
                raise CheckFailed(
                    f"encoding the same {side}s twice in eval mode gave different vectors",
                    "make eval-mode encoding deterministic: no dropout or sampling outside "
                    "training mode (use nn.Dropout, or check self.training)",
                )
            n = next(iter(batch.values())).shape[0]
            for i in range(n):
                one = encode({k: v[i : i + 1] for k, v in batch.items()})
                diff = _max_diff(one[0], full[i])
                if not diff <= ATOL:
                    raise CheckFailed(
                        f"{side} row {i} encoded alone differs from the same row inside a "
                        f"batch of {n} by {diff:.2e}",
                        "rows must not interact in eval mode: no statistics over the batch "
                        "axis (BatchNorm uses running stats in eval), no reductions over dim 0",
                    )


def _check_steps(ctx: _Context) -> None:
    model = ctx.build().eval()
    users = ctx.users()
    hist = model.history_feature
    if hist not in users:
        raise CheckSkipped(f"the batch has no history column {hist!r}")
    with torch.no_grad():
        try:
            steps = model.encode_user_steps(users)
        except NotImplementedError:
            if model.trains_on_sequences:
                raise CheckFailed(
                    "trains_on_sequences is True but encode_user_steps is not implemented",
                    "implement encode_user_steps -> (B, L, D), or set trains_on_sequences "
                    "= False to train on rows",
                ) from None
            raise CheckSkipped("encode_user_steps is not implemented (trained on rows)") from None
        user = model.encode_user(users)
    seq = users[hist]  # (B, L)
    b, length = seq.shape
    expected = (b, length, *user.shape[1:])
    if tuple(steps.shape) != expected:
        raise CheckFailed(
            f"encode_user_steps returned {tuple(steps.shape)}, expected {expected} "
            "(one user vector after each history position)",
            "return (B, L, D), or (B, L, K, D) for multi-interest models",
        )
    last = (seq != 0).long().sum(dim=1) - 1  # (B,): right-padded
    at_last = steps[torch.arange(b), last]  # (B, D) or (B, K, D)
    diff = _max_diff(at_last, user)
    if not diff <= ATOL:
        raise CheckFailed(
            f"encode_user_steps at the last real position differs from encode_user by {diff:.2e}",
            "compute both from one implementation, so that training (every position) and "
            "serving (the whole history) see the same vector",
        )
    # causality: changing the items after position t must not change the vectors up to t
    t = min(int(last.min()), length - 2)
    if t >= 0:
        n_items = ctx.data.vocab["item_id"] - 1
        other_items = seq % n_items + 1  # (B, L): another real item at every position
        changed = dict(users)
        changed[hist] = torch.where(
            (torch.arange(length) > t) & (seq != 0), other_items, seq
        )  # (B, L)
        with torch.no_grad():
            other = model.encode_user_steps(changed)
        diff = _max_diff(other[:, : t + 1], steps[:, : t + 1])
        if not diff <= ATOL:
            raise CheckFailed(
                f"encode_user_steps is not causal: the vectors up to position {t} changed by "
                f"{diff:.2e} when only later items changed",
                "let position t read positions <= t only (layers.causal_mask in attention, "
                "a left-to-right recurrence); otherwise sequence training sees the targets",
            )
    # the state at an earlier position is the user vector of the history up to it
    t = int(last.min()) // 2
    prefix = dict(users)
    prefix[hist] = torch.where(torch.arange(length) <= t, seq, 0)  # (B, L)
    with torch.no_grad():
        diff = _max_diff(steps[:, t], model.encode_user(prefix))
    if not diff <= ATOL:
        raise CheckFailed(
            f"encode_user_steps at position {t} differs by {diff:.2e} from encode_user of the "
            f"history cut after position {t}",
            "the state after position t must be the user vector of the first t + 1 items "
            "(training targets are scored with it); count positions the same way in both",
        )


def _training_batch(model: MatchModel, data: PreparedData) -> dict[str, Tensor]:
    if model.trains_on_sequences:
        return _rows(data.train_sequences, 0, 16)  # "seq_item_id" windows: every position
    return _rows(data.train, 0, 64)


def _check_gradients(ctx: _Context) -> None:
    from rechub_core.data import loaders_from_prepared

    model = ctx.build()
    trainer, _ = ctx.trainer(model, "gradients")
    loader = loaders_from_prepared(ctx.data, batch_size=64)[0]
    trainer.sampler.bind(loader.n_items, loader.item_counts)
    trainer.sampler.on_epoch_start(lambda: trainer.all_item_vectors(loader))
    model.train()
    loss = trainer.batch_loss(_training_batch(model, ctx.data), loader, torch.Generator())
    if loss.dim() != 0 or not torch.isfinite(loss):
        raise CheckFailed(
            f"the training loss is {loss.detach().tolist()}, not a finite scalar",
            "check regularization() returns a scalar and the vectors are finite",
        )
    model.zero_grad(set_to_none=True)
    loss.backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not bool((p.grad != 0).any()))
    ]
    if missing:
        shown = missing[:8] + (["..."] if len(missing) > 8 else [])
        raise CheckFailed(
            f"gradients did not reach parameters {shown} after one training loss backward",
            "make sure every parameter is used in encode_user/encode_item (or in "
            "regularization()), or freeze it (requires_grad_(False)) or delete it",
        )


def _check_state_dict(ctx: _Context) -> None:
    from rechub_core.io import load_torch, save_torch
    from rechub_core.trainer import load_weights

    saved = ctx.build(seed=0).eval()
    path = ctx.workdir / "state_dict" / "model.pt"
    try:
        save_torch(path, {"model_class": type(saved).__name__, "state_dict": saved.state_dict()})
        payload = load_torch(path)
    except Exception as exc:
        raise CheckFailed(
            f"the state dict cannot be saved and loaded with weights_only=True ({exc})",
            "keep only tensors in the state dict (register state as parameters or buffers; "
            "no custom objects in get_extra_state)",
        ) from exc
    fresh = ctx.build(seed=1).eval()
    load_weights(fresh, payload, "the saved state dict")
    users, items = ctx.users(), ctx.items()
    with torch.no_grad():
        diffs = {
            "user": _max_diff(saved.encode_user(users), fresh.encode_user(users)),
            "item": _max_diff(saved.encode_item(items), fresh.encode_item(items)),
        }
    bad = {k: v for k, v in diffs.items() if not v <= ATOL}
    if bad:
        side, diff = next(iter(bad.items()))
        raise CheckFailed(
            f"after loading the saved state dict into a model built with another seed, the "
            f"{side} vectors differ by {diff:.2e}",
            "register every tensor the towers use as a parameter or a persistent buffer "
            "(self.register_buffer), not as a plain attribute drawn at construction",
        )


def _check_onnx(ctx: _Context) -> None:
    from rechub_core.export import export_tower, onnx_max_abs_diff

    model = ctx.build().eval()
    users, items = ctx.users(), ctx.items()
    user_checks = [
        (f"a batch of {USER_ROWS} users", users),
        ("a batch of 1 user", _rows(users, 0, 1)),
    ]
    for name in _user_sequences(model, users):
        if users[name].shape[1] > 2:
            shorter = dict(users)
            shorter[name] = users[name][:, :-2]  # (B, L - 2): another sequence length
            user_checks.append((f"a shorter {name!r}", shorter))
    for side, example, batches in (
        ("user", users, user_checks),
        ("item", items, [(f"a batch of {ITEM_ROWS} items", items), ("1 item", _rows(items, 0, 1))]),
    ):
        path = ctx.workdir / "onnx" / f"{side}.onnx"
        try:
            export_tower(model, path, side, example)
        except Exception as exc:
            raise CheckFailed(
                f"exporting the {side} tower to ONNX failed: {_one_line(exc)}",
                "use ops ONNX opset 17 supports and no data-dependent Python control flow in "
                f"encode_{side}; keep eager-only input checks behind "
                "rechub_core.layers.input_checks_enabled()",
            ) from exc
        for what, batch in batches:
            try:
                diff = onnx_max_abs_diff(model, path, side, batch)
            except Exception as exc:
                raise CheckFailed(
                    f"the exported {side} tower fails on {what} in onnxruntime: {_one_line(exc)}",
                    "do not bake the example's batch size or sequence length into the graph "
                    "(no Python ints from tensor shapes, no .item(), no shape-based slicing)",
                ) from exc
            if not diff < ONNX_TOLERANCE:
                raise CheckFailed(
                    f"the exported {side} tower differs from PyTorch by {diff:.2e} on {what} "
                    f"(tolerance {ONNX_TOLERANCE:g})",
                    "do not bake the example's batch size or sequence length into the graph: "
                    "avoid Python control flow on tensor values and shapes in encode_"
                    f"{side}",
                )


def _check_training(ctx: _Context) -> None:
    from rechub_core.data import loaders_from_prepared

    model = ctx.build()
    trainer, settings = ctx.trainer(model, "training", epochs=ctx.epochs)
    train_dl, _, test_dl = loaders_from_prepared(ctx.data, settings.batch_size, seed=0)
    history = trainer.fit(train_dl)
    losses = [float(h["loss"]) for h in history]
    if not all(math.isfinite(x) for x in losses):
        raise CheckFailed(
            f"the training loss became non-finite: {losses}",
            "lower train_defaults.lr or raise the temperature; check normalisations",
        )
    if not losses[-1] < losses[0] - MIN_LOSS_DROP * abs(losses[0]):
        shown = " -> ".join(f"{x:.4f}" for x in losses)
        raise CheckFailed(
            f"{len(losses)} epochs with the model's train_defaults (mode {settings.mode}, loss "
            f"{settings.loss or 'default'}, sampler {settings.sampler}, lr {settings.lr:g}) did "
            f"not lower the training loss (by {MIN_LOSS_DROP:.2%} at least): {shown}",
            "make sure the vectors depend on trainable parameters and the inputs, and that "
            "train_defaults (lr, loss, sampler) suit the model",
        )
    metrics = trainer.evaluate(test_dl, train_dl)
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise CheckFailed(
            f"full-ranking metrics after training are not finite: {bad}",
            "make encode_user/encode_item finite for every user and item (e.g. the padding "
            "item 0 and items never seen in training)",
        )


_CHECK_FUNCTIONS: dict[str, Callable[[_Context], None]] = {
    "shapes": _check_shapes,
    "padding": _check_padding,
    "recency": _check_recency,
    "batch": _check_batch,
    "steps": _check_steps,
    "gradients": _check_gradients,
    "state_dict": _check_state_dict,
    "onnx": _check_onnx,
    "training": _check_training,
}


# --------------------------------------------------------------------------- running


def _one_line(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return " ".join(text.split())


#: frames of these packages are not the model's own code
_LIBRARY_PARTS = frozenset({"rechub_core", "torch", "onnx", "onnxruntime", "pluggy"})


def _where(exc: BaseException) -> str:
    """`` (at file:line in function)`` of the innermost frame in the model's own code."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not _LIBRARY_PARTS & set(Path(f.filename).parts)
    ]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {Path(f.filename).name}:{f.lineno} in {f.name})"


def _resolve(model: ModelSource, train_defaults: TrainDefaults | None) -> tuple[str, ModelSpec]:
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
            train_defaults=train_defaults or TrainDefaults(),
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
    train_defaults: TrainDefaults | None = None,
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
        train_defaults: how to train (default: the spec's; a factory gets ``TrainDefaults()``:
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
    with _workdir(workdir) as folder, torch.random.fork_rng(devices=[]):
        ctx = _Context(
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


def _run(ctx: _Context, selected: list[str], explicit_defaults: bool) -> list[CheckResult]:
    try:
        model = ctx.build()
    except Exception as exc:
        message = (
            f"{ctx.label}: the model could not be built from a DataSchema: {_one_line(exc)}"
            f"{_where(exc)}. Fix: from_schema(schema, **params) must return a MatchModel built "
            "from the schema's features (and accept the params you pass)"
        )
        skipped = [CheckResult(c, "skipped", "the model could not be built") for c in selected]
        return [CheckResult("build", "failed", message), *skipped]
    if ctx.stand_in:
        modes = tuple(model.supported_modes)
        defaults = ctx.spec.train_defaults
        if not explicit_defaults and defaults.mode not in modes:
            defaults = attrs.evolve(defaults, mode=modes[-1])
        ctx.spec = attrs.evolve(ctx.spec, modes=modes, train_defaults=defaults)
    results: list[CheckResult] = []
    for check in selected:
        start = time.perf_counter()
        try:
            _CHECK_FUNCTIONS[check](ctx)
        except CheckSkipped as exc:
            results.append(CheckResult(check, "skipped", str(exc), time.perf_counter() - start))
            continue
        except CheckFailed as exc:
            message = f"{ctx.label}: check '{check}' failed: {exc.problem}. Fix: {exc.fix}"
        except Exception as exc:
            message = (
                f"{ctx.label}: check '{check}' failed: it raised {_one_line(exc)}{_where(exc)}. "
                "Fix: the model must accept the batches rechub builds (dicts of the declared "
                "features' tensors) and honour the MatchModel contract"
            )
        else:
            results.append(CheckResult(check, "passed", "", time.perf_counter() - start))
            continue
        results.append(CheckResult(check, "failed", message, time.perf_counter() - start))
    return results


@contextlib.contextmanager
def _workdir(workdir: str | Path | None) -> Iterator[Path]:
    """``workdir`` as a Path, or a temporary folder removed on exit."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="rechub-conformance-") as tmp:
        yield Path(tmp)


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


# --------------------------------------------------------------------------- pytest plugin


@pytest.fixture(scope="session")
def rechub_conformance_data() -> PreparedData:
    """The small synthetic data the kit builds and trains on (session-wide)."""
    return conformance_data()


@pytest.fixture
def rechub_conformance(
    tmp_path: Path, rechub_conformance_data: PreparedData
) -> Iterator[Callable[..., ConformanceReport]]:
    """``rechub_conformance(model, **kwargs)`` runs :func:`check_model` in ``tmp_path`` and
    fails the test with the report (each failed check and its fix) when a check fails."""

    def run(model: ModelSource, **kwargs: Any) -> ConformanceReport:
        kwargs.setdefault("data", rechub_conformance_data)
        kwargs.setdefault("workdir", tmp_path / "conformance")
        report = check_model(model, **kwargs)
        if not report.ok:
            pytest.fail(str(report), pytrace=False)
        return report

    yield run


@pytest.fixture
def rechub_index_conformance(tmp_path: Path) -> Iterator[Callable[..., ConformanceReport]]:
    """``rechub_index_conformance(index, **kwargs)`` runs :func:`check_index` in ``tmp_path``
    and fails the test with the report when a check fails."""

    def run(index: Any, **kwargs: Any) -> ConformanceReport:
        kwargs.setdefault("workdir", tmp_path / "index-conformance")
        report = check_index(index, **kwargs)
        if not report.ok:
            pytest.fail(str(report), pytrace=False)
        return report

    yield run


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One header line listing the rechub plugins found (and any that failed to load)."""
    from rechub_core.plugins import iter_plugins

    found = [f"{i.name} {i.version} ({i.status})" for i in iter_plugins()]
    return [f"rechub plugins: {', '.join(found) or 'none'}"]
