"""The loss of one training batch, for any model (the trainer's per-step path).

Encode the batch's users (every position of every sequence for models trained on sequences);
ask the sampler for negatives; encode the distinct candidate items once; score with
``model.logits``; mask accidental hits; apply the loss (with the sampler's ``log_q`` when the
loss corrects for sampling bias). Negatives shared by the batch without in-batch positives take
the fast path (:meth:`BatchLossMixin._shared_negatives_loss`): one ``(B, D) x (D, n)`` matmul.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from rechub_core.data import BatchLoader
from rechub_core.errors import InputError
from rechub_core.losses import CandidateLoss, shared_negative_logits
from rechub_core.model import MatchModel
from rechub_core.samplers import NegativeSample, Sampler

__all__ = ["SEQUENCE_COLUMN", "BatchLossMixin", "distinct_ids"]

#: the fewest shared candidates whose training scores run in ``logits_dtype`` (bfloat16):
#: below it the product is too small to gain (DSSM / ComirecSA with 512 shared negatives on
#: Toys: 3.5 / 5.3 s an epoch in bfloat16 against 3.8 / 5.4 s, validation NDCG@10 0.0381 /
#: 0.0520 against 0.0383 / 0.0531, session 8), while a full softmax over 11,924 items gains 1.38x
LOW_PRECISION_MIN_CANDIDATES = 4096

#: the batch column of per-user training sequences ``(U, L + 1)`` (``PreparedData.train_sequences``)
SEQUENCE_COLUMN = "seq_item_id"


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16 -> "bfloat16"``: a dtype as run folders and logs spell it."""
    return str(dtype).removeprefix("torch.")


def distinct_ids(ids: Tensor, n_items: int) -> tuple[Tensor, Tensor]:
    """``torch.unique(ids, return_inverse=True)`` for item ids in ``[0, n_items)``: sorted
    distinct ids ``(U,)`` and each id's position among them (``ids.shape``). For catalogues
    up to 64 times the number of ids it marks a bitmap instead of sorting (a few times faster
    for a training batch on CPU)."""
    if n_items > 64 * ids.numel():
        return torch.unique(ids, return_inverse=True)
    flat = ids.reshape(-1)
    present = torch.zeros(n_items, dtype=torch.bool, device=ids.device)
    present[flat] = True
    uniq = present.nonzero().squeeze(1)  # (U,) sorted
    slot = torch.empty(n_items, dtype=torch.long, device=ids.device)
    slot[uniq] = torch.arange(uniq.numel(), device=ids.device)
    return uniq, slot[ids]


class BatchLossMixin:
    """``batch_loss`` and its helpers, mixed into :class:`~rechub_core.trainer.MatchTrainer`."""

    model: MatchModel
    device: torch.device
    sampler: Sampler
    loss_fn: CandidateLoss
    mode: int
    gather_negatives: bool
    logits_dtype: torch.dtype
    #: set once a training step scored its candidates in ``logits_dtype`` (below the bound
    #: every product stays float32, whatever the setting)
    scored_low_precision: bool = False
    dist: Any
    _last_batch_targets: int

    # EvaluationMixin's (annotations only: defining them here would shadow its methods)
    _encode_items: Callable[[BatchLoader, Tensor], Tensor]
    _to_device: Callable[[Mapping[str, Tensor]], dict[str, Tensor]]

    @property
    def scored_dtype(self) -> str:
        """What the training scores were computed in so far, by name (``"bfloat16"``, ...):
        ``logits_dtype`` once a step scored at least :data:`LOW_PRECISION_MIN_CANDIDATES`
        shared candidates in it, ``"float32"`` otherwise (whatever the setting)."""
        return dtype_name(self.logits_dtype if self.scored_low_precision else torch.float32)

    def _encode_distinct(self, loader: BatchLoader, ids: Tensor) -> Tensor:
        """Vectors ``ids.shape + (D,)`` for item ids of any shape, encoding each distinct item
        once (with gradients) and gathering the rest."""
        uniq, inverse = distinct_ids(ids, loader.n_items)
        vectors = self._encode_items(loader, uniq)  # (U, D)
        return vectors.index_select(0, inverse.reshape(-1)).view(*ids.shape, *vectors.shape[1:])

    def batch_loss(
        self, batch: Mapping[str, Tensor], loader: BatchLoader, gen: torch.Generator
    ) -> Tensor:
        """The training loss of one batch (model-agnostic; see the module docstring)."""
        model = self.model
        x = self._to_device(batch)
        id_name = model.item_id_name
        if id_name not in x and SEQUENCE_COLUMN not in x:
            raise InputError(
                f"the training batch has no item id column {id_name!r} (it has "
                f"{', '.join(sorted(x))}); each row needs the positive item"
            )
        if "label" in x:
            return self._labelled_loss(x, model.encode_user_train(x), loader)
        if SEQUENCE_COLUMN in x:
            user, pos = self._step_users(x)  # (M, D), (M,): every position of every sequence
        else:
            pos = x[id_name]  # (B,)
            user = model.encode_user_train(x)  # (B, D) or (B, K, D)
        self._last_batch_targets = int(pos.shape[0])
        if self._gathers:
            return self._gathered_in_batch_loss(user, pos, loader, gen)
        neg: NegativeSample = self.sampler.sample(pos.cpu(), gen, user_vectors=user)
        neg_ids = neg.ids.to(self.device)
        b = pos.shape[0]
        valid: Tensor | None
        if neg.full_catalogue:
            cand = neg_ids  # (N,): item i at column i - 1
            target = pos - 1  # (B,)
            valid = None
        elif neg.shared and not neg.batch_positives and user.dim() == 2:
            return self._shared_negatives_loss(user, pos, neg_ids, loader)
        elif neg.shared:
            cand = torch.cat([pos, neg_ids])  # (B + n,)
            target = torch.arange(b, device=self.device)  # (B,)
            valid = cand.view(1, -1) != pos.view(-1, 1)  # (B, B + n): accidental hits masked
            if not neg.batch_positives:
                valid[:, :b] = False
            valid[target, target] = True
        else:
            cand = torch.cat([pos.view(-1, 1), neg_ids], dim=1)  # (B, 1 + n)
            target = torch.zeros(b, dtype=torch.long, device=self.device)
            valid = cand != pos.view(-1, 1)
            valid[:, 0] = True
        if neg.full_catalogue:  # every item once, in order: no distinct pass, no gather
            item_vectors = self._encode_items(loader, cand)  # (N, D)
        else:
            item_vectors = self._encode_distinct(loader, cand)  # (B+n, D) or (B, 1+n, D)
        return self._candidate_loss(user, item_vectors, cand, target, valid)

    def _candidate_loss(
        self, user: Tensor, item_vectors: Tensor, cand: Tensor, target: Tensor, valid: Tensor | None
    ) -> Tensor:
        """Loss of users ``(B, D)`` / ``(B, K, D)`` against candidates ``cand`` (``(C,)``
        shared or ``(B, C)`` per row) with vectors ``(C, D)`` / ``(B, C, D)``."""
        model = self.model
        logits = self._logits(user, item_vectors, target)  # (B, C)
        log_q = None
        if self.loss_fn.uses_log_q:
            log_q = self.sampler.log_q(cand).to(self.device)
            if log_q.dim() == 1:
                log_q = log_q.view(1, -1)  # shared candidates: the same for every row
        loss = self.loss_fn(logits, target, valid, log_q)
        reg = model.regularization()
        return loss if reg is None else loss + reg

    def _logits(self, user: Tensor, items: Tensor, target: Tensor | None = None) -> Tensor:
        """``model.logits`` ``(B, C)``, float32; against at least
        :data:`LOW_PRECISION_MIN_CANDIDATES` candidates shared by the batch (``items (C, D)``:
        a full softmax's catalogue) computed in ``self.logits_dtype``; smaller products (512
        shared negatives) and per-row candidates stay float32."""
        dtype = self.logits_dtype
        if (
            dtype == torch.float32
            or items.dim() != 2
            or items.shape[0] < LOW_PRECISION_MIN_CANDIDATES
        ):
            return self.model.logits(user, items, target)
        self.scored_low_precision = True
        return self.model.logits(user.to(dtype), items.to(dtype), target).float()

    def _shared_negatives_loss(
        self, user: Tensor, pos: Tensor, neg_ids: Tensor, loader: BatchLoader
    ) -> Tensor:
        """Loss against ``n`` negatives shared by the batch (the fast sampled-softmax path):
        each row's positive logit by a row-wise dot ``(B, 1)``, the negatives by one
        ``(B, D) x (D, n)`` matmul, accidental hits (a negative equal to the row's positive)
        masked. Never forms a ``(B, B + n)`` or ``(B, catalogue)`` matrix. With a loss that
        corrects for sampling (``sampled_softmax``), the negatives' logits are corrected by
        ``log(n q_j)`` and the positive's not, so ``exp(loss)`` is an unbiased estimate of the
        full softmax's (property-tested in ``tests/test_losses_samplers.py``)."""
        b = pos.shape[0]
        vectors = self._encode_distinct(loader, torch.cat([pos, neg_ids]))  # (B + n, D)
        pos_logit = self.model.logits(user, vectors[:b].unsqueeze(1))  # (B, 1)
        neg_logits = self._logits(user, vectors[b:])  # (B, n)
        neg_log_q = self.sampler.log_q(neg_ids).to(self.device) if self.loss_fn.uses_log_q else None
        logits, target, valid, log_q = shared_negative_logits(
            pos_logit, neg_logits, pos, neg_ids, neg_log_q
        )
        loss = self.loss_fn(logits, target, valid, log_q)
        reg = self.model.regularization()
        return loss if reg is None else loss + reg

    @property
    def _gathers(self) -> bool:
        return self.gather_negatives and self.dist.enabled

    def _gathered_in_batch_loss(
        self, user: Tensor, pos: Tensor, loader: BatchLoader, gen: torch.Generator
    ) -> Tensor:
        """In-batch loss where every rank's positives are negatives: the positives' ids and
        vectors are all-gathered (``G`` rows over all ranks); this rank's rows sit at
        ``offset ..``, and gradients flow back to them through the gather."""
        all_pos, offset = self.dist.gather_rows(pos)  # (G,)
        # the sampler sees the global batch, so its log_q describes the global batch
        neg = self.sampler.sample(all_pos.cpu(), gen, user_vectors=user)
        local = self._encode_distinct(loader, pos)  # (B, D)
        gathered, _ = self.dist.gather_rows(local)  # (G, D)
        neg_ids = neg.ids.to(self.device)
        if neg_ids.numel():
            cand = torch.cat([all_pos, neg_ids])  # (G + n,)
            item_vectors = torch.cat([gathered, self._encode_items(loader, neg_ids)])
        else:
            cand, item_vectors = all_pos, gathered
        b = pos.shape[0]
        rows = torch.arange(b, device=self.device)
        target = rows + offset  # (B,)
        valid = cand.view(1, -1) != pos.view(-1, 1)  # (B, G + n): accidental hits masked
        valid[rows, target] = True
        return self._candidate_loss(user, item_vectors, cand, target, valid)

    def _step_users(self, x: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Users and positives of sequence training: the model reads ``seq[:, :-1]`` as the
        history and predicts ``seq[:, 1:]`` at every real position."""
        model = self.model
        seq = x[SEQUENCE_COLUMN]  # (B, L + 1), right-padded
        # drop the columns that are padding in every row: causal states at real positions
        # do not depend on later (padding) columns, so this is exact and saves the attention /
        # recurrence over them (most of a short-sequence data set's width)
        used = int((seq != 0).any(dim=0).nonzero().max()) + 1 if seq.numel() else 0
        if 1 < used < seq.shape[1]:
            seq = seq[:, :used]
        inputs = dict(x)
        inputs[model.history_feature] = seq[:, :-1]  # (B, L)
        targets = seq[:, 1:]  # (B, L)
        steps = model.encode_user_steps(inputs)  # (B, L, D) or (B, L, K, D)
        keep = (targets != 0) & (seq[:, :-1] != 0)  # (B, L)
        return steps[keep], targets[keep]

    def _labelled_loss(self, x: Mapping[str, Tensor], user: Tensor, loader: BatchLoader) -> Tensor:
        self._last_batch_targets = int(user.shape[0])
        if self.mode != 0:
            raise InputError(
                "the data has a 'label' column (explicit negatives), which only point-wise "
                "training uses; set mode=0, or drop y and let a sampler draw negatives"
            )
        pos = x[self.model.item_id_name]
        items = self._encode_items(loader, pos).unsqueeze(1)  # (B, 1, D)
        zero = torch.zeros_like(pos)
        logits = self.model.logits(user, items, zero).squeeze(1)  # (B,)
        return self.loss_fn.labelled(logits, x["label"])  # the configured loss (bce in mode 0)
