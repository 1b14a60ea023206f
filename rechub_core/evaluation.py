"""Evaluation and serving half of :class:`~rechub_core.trainer.MatchTrainer`: item vectors in
batches, full-ranking evaluation, user/item embedding inference and ONNX export.

User vectors of loaders whose id sequences are mostly padding (less than half the cells real,
e.g. Amazon data at ``max_len`` 50) are computed in order of history length with each batch cut
to its real columns (:meth:`rechub_core.data.BatchLoader.by_length`) and put back in row order:
the same vectors (the model contract masks padding) without encoding padding columns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from rechub_core.checkpoints import load_weights
from rechub_core.data import BatchLoader
from rechub_core.errors import InputError
from rechub_core.export import export_tower, onnx_max_abs_diff
from rechub_core.io import load_torch
from rechub_core.metrics import full_ranking_metrics
from rechub_core.model import MatchModel

#: user loaders whose sequence cells are less than this fraction real are encoded by length
BY_LENGTH_BELOW_FILL = 0.5
BEST_WEIGHTS = "model.pt"


class EvaluationMixin:
    """Evaluation, inference and export methods of the trainer (see the module docstring)."""

    model: MatchModel
    device: torch.device
    ks: tuple[int, ...]
    _example: dict[str, Tensor] | None
    _item_example: dict[str, Tensor] | None

    def _to_device(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def _encode_items(self, loader: BatchLoader, ids: Tensor) -> Tensor:
        return self.model.encode_item(self._to_device(loader.item_batch(ids)))

    def _item_batches(
        self, loader: BatchLoader, batch_size: int, start: int
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """``(ids (n,), vectors (n, D))`` on the model's device for items ``start ..
        n_items - 1``, in eval mode without gradients (the mode is restored afterwards)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for lo in range(start, loader.n_items, batch_size):
                    ids = torch.arange(lo, min(lo + batch_size, loader.n_items))
                    yield ids, self._encode_items(loader, ids)
        finally:
            self.model.train(was_training)

    def iter_item_vectors(
        self, loader: BatchLoader, batch_size: int = 4096, start: int = 0
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Item vectors in batches, for catalogues too large to hold twice: yields
        ``(ids (n,) int64, vectors (n, D) float32)`` on the CPU for items ``start ..
        n_items - 1`` of the loader's item table (``start=1`` skips the padding row), without
        keeping earlier batches."""
        for ids, vectors in self._item_batches(loader, batch_size, start):
            yield ids, vectors.float().cpu()

    def all_item_vectors(self, loader: BatchLoader, batch_size: int = 4096) -> Tensor:
        """Vectors of every item in the loader's item table, ``(n_items, D)`` (row 0 padding),
        on the model's device; filled in place batch by batch (no second copy)."""
        out: Tensor | None = None
        for ids, vec in self._item_batches(loader, batch_size, 0):
            if out is None:
                out = vec.new_empty((loader.n_items, *vec.shape[1:]))
            out[int(ids[0]) : int(ids[0]) + vec.shape[0]] = vec
        assert out is not None
        return out

    def evaluate(
        self,
        data_loader: BatchLoader,
        item_loader: BatchLoader | None = None,
        ks: Sequence[int] | None = None,
    ) -> dict[str, float]:
        """Full-ranking metrics (recall, precision, ndcg, hit, mrr at each K) on an evaluation
        loader with targets and seen items; items come from ``item_loader``'s item table (or
        the evaluation loader's own)."""
        if data_loader.targets is None or data_loader.seen_indptr is None:
            raise InputError(
                "evaluate needs a loader with targets and seen items "
                "(rechub_core.data.eval_loader or loaders_from_prepared)"
            )
        items_from = item_loader if item_loader is not None else data_loader
        users = self.inference_embedding(self.model, "user", data_loader)
        items = self.all_item_vectors(items_from)
        assert data_loader.seen_indices is not None
        return full_ranking_metrics(
            users,
            items,
            data_loader.targets,
            data_loader.seen_indptr,
            data_loader.seen_indices,
            ks=tuple(ks or self.ks),
        )

    def inference_embedding(
        self,
        model: MatchModel,
        mode: str,
        data_loader: BatchLoader,
        model_path: str | os.PathLike[str] | None = None,
    ) -> Tensor:
        """User or item vectors for every row of ``data_loader``: ``(N, D)`` (users of
        multi-interest models ``(N, K, D)``), on the CPU. With ``model_path``, first loads the
        best weights saved there."""
        if mode not in ("user", "item"):
            raise InputError(f"mode must be 'user' or 'item', got {mode!r}")
        if model_path is not None:
            load_weights(
                model, load_torch(Path(model_path) / BEST_WEIGHTS, self.device), model_path
            )
        if mode == "user" and self._by_length(data_loader):
            return self._user_vectors_by_length(model, data_loader)
        was_training = model.training
        model.eval()
        n_rows = data_loader._rows_per_epoch()
        out: Tensor | None = None
        filled = 0
        with torch.no_grad():
            for batch in data_loader:
                x = self._to_device(batch)
                vec = model.encode_user(x) if mode == "user" else model.encode_item(x)
                if out is None:  # filled in place: no list of batches and no second copy
                    out = torch.empty((n_rows, *vec.shape[1:]), dtype=vec.dtype)
                out[filled : filled + vec.shape[0]] = vec.cpu()
                filled += vec.shape[0]
        model.train(was_training)
        if out is None:
            raise InputError("inference_embedding got an empty loader")
        return out[:filled]

    @staticmethod
    def _by_length(loader: BatchLoader) -> bool:
        """Whether user vectors of ``loader`` are computed in order of history length."""
        return loader.world_size == 1 and loader.padding_fill() < BY_LENGTH_BELOW_FILL

    def _user_vectors_by_length(self, model: MatchModel, loader: BatchLoader) -> Tensor:
        """User vectors of every row of ``loader`` (in row order), encoded in batches of
        similar history length cut to their real columns."""
        was_training = model.training
        model.eval()
        out: Tensor | None = None
        try:
            with torch.no_grad():
                for rows, batch in loader.by_length():
                    vec = model.encode_user(self._to_device(batch)).cpu()
                    if out is None:
                        out = torch.empty((loader.n_rows, *vec.shape[1:]), dtype=vec.dtype)
                    out[rows] = vec
        finally:
            model.train(was_training)
        if out is None:
            raise InputError("inference_embedding got an empty loader")
        return out

    def export_onnx(
        self,
        output_path: str | os.PathLike[str],
        mode: str = "user",
        example: Mapping[str, Tensor] | None = None,
        verify: bool = True,
        tolerance: float = 1e-4,
    ) -> Path:
        """Export one tower to ONNX (dynamic batch and sequence axes) and check it with
        onnxruntime against PyTorch (max abs diff < ``tolerance``)."""
        if example is None:
            example = self._example if mode == "user" else self._item_example
        if example is None:
            raise InputError("export_onnx needs an example batch; pass example= or fit() first")
        path = export_tower(self.model, output_path, mode, example)
        if verify:
            diff = onnx_max_abs_diff(self.model, path, mode, example)
            if diff >= tolerance:
                raise InputError(f"ONNX {mode} tower differs from PyTorch by {diff:.2e}")
        return path
