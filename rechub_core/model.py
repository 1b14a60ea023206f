"""The contract every retrieval model honours, and the base class that implements most of it.

A model has two encoders and nothing else: ``encode_user(x) -> (B, D)`` (or ``(B, K, D)`` for
multi-interest models) and ``encode_item(x) -> (B, D)``. Scores are dot products divided by the
temperature. Losses, samplers and indexes are separate components chosen by the trainer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from rechub_core.architecture import RecordsInitArgs
from rechub_core.errors import InputError
from rechub_core.features import Feature, SequenceFeature, SparseFeature, item_id_feature
from rechub_core.layers import EmbeddingLayer

MODE_NAMES = {0: "point-wise", 1: "pair-wise", 2: "list-wise"}


class MatchModel(RecordsInitArgs, nn.Module):
    """Base class of two-tower retrieval models.

    Subclasses implement :meth:`encode_user` and :meth:`encode_item`; the base class owns the
    embedding tables (``self.embedding``, shared between towers where features say so), the
    temperature and the scoring of candidates.

    Args:
        user_features: features the user encoder reads.
        item_features: features the item encoder reads; the first sparse one is the item id.
        temperature: scores are ``dot(u, v) / temperature`` (> 0).
    """

    #: Training modes the model supports (0 point-wise, 1 pair-wise, 2 list-wise).
    supported_modes: ClassVar[tuple[int, ...]] = (0, 1, 2)
    #: True when :meth:`encode_user` returns ``(B, K, D)``.
    multi_interest: ClassVar[bool] = False
    #: True when the model is trained on every position of each user's sequence: it then
    #: implements :meth:`encode_user_steps` and names its history input in ``history_feature``.
    trains_on_sequences: ClassVar[bool] = False
    #: name of the ordered history input (``(B, L)`` item ids, oldest first, right-padded with
    #: 0: the history contract of docs/protocol.md)
    history_feature: str = "hist_item_id"

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if not user_features:
            raise InputError("user_features is empty; a model needs at least one user feature")
        if not item_features:
            raise InputError("item_features is empty; a model needs at least the item id")
        if not isinstance(temperature, int | float) or temperature <= 0:
            raise InputError(f"temperature must be a positive number, got {temperature!r}")
        self.user_features = list(user_features)
        self.item_features = list(item_features)
        self.temperature = float(temperature)
        self.embedding = EmbeddingLayer([*self.user_features, *self.item_features])
        self.item_id_feature: SparseFeature = item_id_feature(
            self.item_features, type(self).__name__
        )

    # --- the contract ---------------------------------------------------------------------------

    @property
    def user_feature_names(self) -> list[str]:
        """Names of the user-side inputs, in the order ONNX export uses."""
        return [f.name for f in self.user_features]

    @property
    def item_feature_names(self) -> list[str]:
        """Names of the item-side inputs, in the order ONNX export uses."""
        return [f.name for f in self.item_features]

    @property
    def item_id_name(self) -> str:
        """Name of the item id feature."""
        return self.item_id_feature.name

    @property
    def n_items(self) -> int:
        """Item vocabulary size including the padding id 0."""
        return self.item_id_feature.vocab_size

    def encode_user(self, x: Mapping[str, Tensor]) -> Tensor:
        """User vectors ``(B, D)``, or ``(B, K, D)`` for multi-interest models."""
        raise NotImplementedError

    def encode_item(self, x: Mapping[str, Tensor]) -> Tensor:
        """Item vectors ``(B, D)``."""
        raise NotImplementedError

    def encode_user_train(self, x: Mapping[str, Tensor]) -> Tensor:
        """The user vectors the training loss scores: :meth:`encode_user` (same shape in
        training and evaluation), unless the model trains on a vector it does not serve
        (SINE: its aggregated interest ``(B, D)``). Only the trainer calls it."""
        return self.encode_user(x)

    def encode_user_steps(self, x: Mapping[str, Tensor]) -> Tensor:
        """User vectors after each position of the history: ``(B, L, D)`` where row ``[b, t]``
        may only depend on positions ``<= t`` (causal). Needed when ``trains_on_sequences``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement encode_user_steps")

    def check_mode(self, mode: int) -> None:
        """Raise :class:`InputError` when the model cannot be trained in ``mode``."""
        if mode not in MODE_NAMES:
            raise InputError(
                f"mode must be 0 (point-wise), 1 (pair-wise) or 2 (list-wise), got {mode!r}"
            )
        if mode not in self.supported_modes:
            allowed = ", ".join(f"{m} ({MODE_NAMES[m]})" for m in self.supported_modes)
            raise InputError(
                f"{type(self).__name__} does not support mode={mode} ({MODE_NAMES[mode]}); "
                f"supported: {allowed}"
            )

    def sequence_feature_names(self, side: str = "user") -> list[str]:
        """Names of sequence inputs (their length axis is dynamic in ONNX export)."""
        feats = self.user_features if side == "user" else self.item_features
        return [f.name for f in feats if isinstance(f, SequenceFeature)]

    # --- scoring ------------------------------------------------------------------------------

    def logits(self, user: Tensor, items: Tensor, target_index: Tensor | None = None) -> Tensor:
        """Candidate logits ``dot(u, v) / temperature``.

        Args:
            user: ``(B, D)`` or multi-interest ``(B, K, D)``.
            items: per-row candidates ``(B, C, D)`` or candidates shared by the batch ``(C, D)``.
            target_index: ``(B,)`` column of each row's positive; multi-interest models score
                every candidate with the interest closest to the positive (training) and
                with the best interest per candidate when it is None (retrieval).
        Returns:
            ``(B, C)``.
        """
        if user.dim() == 2:
            # per-row candidates: multiply-and-sum, 3-4x faster on CPU than a batched matmul
            # of (1, D) x (D, C)
            scores = (
                user @ items.T if items.dim() == 2 else (items * user.unsqueeze(1)).sum(dim=-1)
            )  # (B, C)
            # temperature 1 (the sequential family) skips a pass over the (B, C) scores, and
            # its backward: a full softmax's scores are positions x catalogue
            return scores if self.temperature == 1.0 else scores / self.temperature
        if items.dim() == 2:
            per_interest = torch.einsum("bkd,cd->bkc", user, items)  # (B, K, C)
        else:
            per_interest = torch.einsum("bkd,bcd->bkc", user, items)  # (B, K, C)
        if target_index is None:
            return per_interest.amax(dim=1) / self.temperature  # (B, C)
        index = target_index.view(-1, 1, 1).expand(-1, per_interest.shape[1], 1)  # (B, K, 1)
        target_sims = per_interest.gather(2, index).squeeze(2)  # (B, K)
        best = target_sims.argmax(dim=1)  # (B,)
        chosen = per_interest[torch.arange(user.shape[0], device=user.device), best]  # (B, C)
        return chosen / self.temperature

    def regularization(self) -> Tensor | None:
        """An extra loss term added to the training loss (e.g. SINE's covariance term)."""
        return None
