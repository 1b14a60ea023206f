"""The model checks about training and saving: gradients, state_dict round trip, ONNX
export parity and a few epochs of training.

PYTEST_DONT_REWRITE: like the package, pytest need not rewrite it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from rechub_core.model import MatchModel
from rechub_core.preprocess import PreparedData
from rechub_core.testing._context import (
    ATOL,
    ITEM_ROWS,
    MIN_LOSS_DROP,
    ONNX_TOLERANCE,
    USER_ROWS,
    Context,
    max_diff,
    take_rows,
    user_sequences,
)
from rechub_core.testing._report import CheckFailed, one_line


def _training_batch(model: MatchModel, data: PreparedData) -> dict[str, Tensor]:
    if model.trains_on_sequences:
        return take_rows(data.train_sequences, 0, 16)  # "seq_item_id" windows: every position
    return take_rows(data.train, 0, 64)


def _check_gradients(ctx: Context) -> None:
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


def _check_state_dict(ctx: Context) -> None:
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
            "user": max_diff(saved.encode_user(users), fresh.encode_user(users)),
            "item": max_diff(saved.encode_item(items), fresh.encode_item(items)),
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


def _check_onnx(ctx: Context) -> None:
    from rechub_core.export import export_tower, onnx_max_abs_diff

    model = ctx.build().eval()
    users, items = ctx.users(), ctx.items()
    user_checks = [
        (f"a batch of {USER_ROWS} users", users),
        ("a batch of 1 user", take_rows(users, 0, 1)),
    ]
    for name in user_sequences(model, users):
        if users[name].shape[1] > 2:
            shorter = dict(users)
            shorter[name] = users[name][:, :-2]  # (B, L - 2): another sequence length
            user_checks.append((f"a shorter {name!r}", shorter))
    for side, example, batches in (
        ("user", users, user_checks),
        (
            "item",
            items,
            [(f"a batch of {ITEM_ROWS} items", items), ("1 item", take_rows(items, 0, 1))],
        ),
    ):
        path = ctx.workdir / "onnx" / f"{side}.onnx"
        try:
            export_tower(model, path, side, example)
        except Exception as exc:
            raise CheckFailed(
                f"exporting the {side} tower to ONNX failed: {one_line(exc)}",
                "use ops ONNX opset 17 supports and no data-dependent Python control flow in "
                f"encode_{side}; keep eager-only input checks behind "
                "rechub_core.layers.input_checks_enabled()",
            ) from exc
        for what, batch in batches:
            try:
                diff = onnx_max_abs_diff(model, path, side, batch)
            except Exception as exc:
                raise CheckFailed(
                    f"the exported {side} tower fails on {what} in onnxruntime: {one_line(exc)}",
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


def _check_training(ctx: Context) -> None:
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


#: the training and saving checks by name, in the order they run
TRAINING_CHECKS: dict[str, Callable[[Context], None]] = {
    "gradients": _check_gradients,
    "state_dict": _check_state_dict,
    "onnx": _check_onnx,
    "training": _check_training,
}
