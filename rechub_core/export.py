"""ONNX export of user and item towers, checked against PyTorch with onnxruntime."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rechub_core.errors import InputError
from rechub_core.io import atomic_path
from rechub_core.model import MatchModel

OPSET = 17


class TowerModule(nn.Module):
    """One tower with positional tensor inputs (what ONNX needs): ``forward(*inputs) -> (B, D)``.

    Inputs follow ``names``; the output is the tower's vectors ``(B, D)`` (user: ``(B, K, D)``
    for multi-interest models).
    """

    def __init__(self, model: MatchModel, mode: str) -> None:
        super().__init__()
        if mode not in ("user", "item"):
            raise InputError(f"mode must be 'user' or 'item', got {mode!r}")
        self.model = model
        self.mode = mode
        self.names = model.user_feature_names if mode == "user" else model.item_feature_names

    def forward(self, *inputs: Tensor) -> Tensor:
        """Tower vectors for positional inputs in the order of ``self.names``."""
        x = dict(zip(self.names, inputs, strict=True))
        if self.mode == "user":
            return self.model.encode_user(x)
        return self.model.encode_item(x)


def export_tower(
    model: MatchModel, path: str | os.PathLike[str], mode: str, example: Mapping[str, Tensor]
) -> Path:
    """Export the user or item tower to ONNX with a dynamic batch axis (and sequence axis).

    Args:
        model: the trained model (exported in eval mode, on CPU).
        path: output ``.onnx`` file, written atomically.
        mode: "user" or "item".
        example: one batch with every input of that tower (any batch size >= 1).
    Returns:
        The written path.
    """
    tower = TowerModule(model, mode)
    missing = [n for n in tower.names if n not in example]
    if missing:
        raise InputError(f"example batch lacks the {mode} inputs {missing}")
    was_training = model.training
    device = next(model.parameters()).device
    model.eval().cpu()
    args = tuple(example[n][:2].cpu() for n in tower.names)
    seq = set(model.sequence_feature_names(mode))
    dynamic_axes: dict[str, dict[int, str]] = {}
    for n, a in zip(tower.names, args, strict=True):
        axes = {0: "batch"}
        if n in seq and a.dim() == 2:
            axes[1] = f"{n}_len"
        dynamic_axes[n] = axes
    dynamic_axes["vector"] = {0: "batch"}
    out = Path(path)
    try:
        with atomic_path(out) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                tower,
                args,
                str(tmp),
                input_names=list(tower.names),
                output_names=["vector"],
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        model.to(device)
        model.train(was_training)
    return out


def onnx_max_abs_diff(
    model: MatchModel, path: str | os.PathLike[str], mode: str, batch: Mapping[str, Tensor]
) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's vectors on ``batch``."""
    import onnxruntime as ort

    tower = TowerModule(model, mode)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        expected = tower(*(batch[n].to(device) for n in tower.names)).cpu().numpy()
    model.train(was_training)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: batch[n].cpu().numpy() for n in tower.names}
    (got,) = session.run(["vector"], feeds)
    return float(np.abs(np.asarray(got) - expected).max())
