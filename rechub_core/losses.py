"""Training losses over candidate logits.

Every loss takes ``logits (B, C)`` (similarity already divided by the model's temperature),
``target (B,)`` the column of each row's positive, ``valid (B, C)`` bool (False for candidates
that must not count, e.g. accidental hits: the row's own positive appearing as a negative), and
optionally ``log_q (B, C)``, the log of each candidate's sampling probability.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rechub_core.errors import InputError
from rechub_core.layers import MASK_VALUE  # finite: -inf gives NaN gradients on masked-out rows


def _positive(logits: Tensor, target: Tensor) -> Tensor:
    """``(B, C)`` bool, True at each row's target (a bool scatter: no int64 one-hot)."""
    mask = torch.zeros_like(logits, dtype=torch.bool)
    return mask.scatter_(1, target.view(-1, 1), True)


def _check_shapes(logits: Tensor, target: Tensor) -> None:
    if logits.dim() != 2:
        raise InputError(f"logits must be (B, C), got {tuple(logits.shape)}")
    if target.shape != (logits.shape[0],):
        raise InputError(f"target must be (B,)={logits.shape[0]}, got {tuple(target.shape)}")


def _check(logits: Tensor, target: Tensor, valid: Tensor | None) -> Tensor:
    _check_shapes(logits, target)
    if valid is None:
        return torch.ones_like(logits, dtype=torch.bool)
    return valid.scatter(1, target.view(-1, 1), True)  # the positive always counts


class CandidateLoss(nn.Module):
    """Base of the losses; ``forward(logits, target, valid=None, log_q=None) -> scalar``."""

    #: True when the loss uses the sampler's ``log_q``.
    uses_log_q: bool = False

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        valid: Tensor | None = None,
        log_q: Tensor | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def labelled(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Loss of rows with explicit labels (the data's ``label`` column, mode 0): ``logits
        (B,)`` of each row's item, ``labels (B,)`` 1 / 0 -> scalar. Losses over candidate
        lists have no such form and say so."""
        raise InputError(
            f"loss {type(self).__name__} ranks candidate lists and cannot train on explicit "
            "labels (the data's 'label' column); use the point-wise loss 'bce' in mode 0, or "
            "drop the column and let a sampler draw negatives"
        )


class BCELoss(CandidateLoss):
    """Point-wise (mode 0): binary cross-entropy, label 1 for the positive, 0 for negatives.

    The mean is over valid (row, candidate) pairs.
    """

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        valid: Tensor | None = None,
        log_q: Tensor | None = None,
    ) -> Tensor:
        keep = _check(logits, target, valid)
        labels = _positive(logits, target).to(logits.dtype)  # (B, C)
        per = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # (B, C)
        return (per * keep).sum() / keep.sum().clamp(min=1)

    def labelled(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean binary cross-entropy of ``logits (B,)`` against explicit ``labels (B,)``."""
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def _pos_neg(logits: Tensor, target: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    pos = logits.gather(1, target.view(-1, 1))  # (B, 1)
    neg_mask = keep & ~_positive(logits, target)  # (B, C)
    return pos, neg_mask


class BPRLoss(CandidateLoss):
    """Pair-wise (mode 1): ``-log sigmoid(s_pos - s_neg)`` averaged over valid negatives."""

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        valid: Tensor | None = None,
        log_q: Tensor | None = None,
    ) -> Tensor:
        keep = _check(logits, target, valid)
        pos, neg_mask = _pos_neg(logits, target, keep)
        per = -F.logsigmoid(pos - logits)  # (B, C)
        return (per * neg_mask).sum() / neg_mask.sum().clamp(min=1)


class HingeLoss(CandidateLoss):
    """Pair-wise (mode 1) triplet hinge: ``max(0, margin - s_pos + s_neg)``.

    Args:
        margin: in logit units (similarity divided by the temperature).
    """

    def __init__(self, margin: float = 0.1) -> None:
        super().__init__()
        if margin < 0:
            raise InputError(f"hinge margin must be >= 0, got {margin}")
        self.margin = margin

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        valid: Tensor | None = None,
        log_q: Tensor | None = None,
    ) -> Tensor:
        keep = _check(logits, target, valid)
        pos, neg_mask = _pos_neg(logits, target, keep)
        per = F.relu(self.margin - pos + logits)  # (B, C)
        return (per * neg_mask).sum() / neg_mask.sum().clamp(min=1)


def _cross_entropy(logits: Tensor, target: Tensor, valid: Tensor | None) -> Tensor:
    """Mean cross-entropy of ``target (B,)`` over the valid columns of ``logits (B, C)``;
    with ``valid`` None (a full softmax: every column counts) no mask is built or applied,
    which saves passes over a positions x catalogue matrix."""
    if valid is None:
        _check_shapes(logits, target)
        return F.cross_entropy(logits, target)
    keep = _check(logits, target, valid)
    return F.cross_entropy(logits.masked_fill(~keep, MASK_VALUE), target)


class SoftmaxLoss(CandidateLoss):
    """List-wise (mode 2): cross-entropy of the positive against the valid candidates."""

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        valid: Tensor | None = None,
        log_q: Tensor | None = None,
    ) -> Tensor:
        return _cross_entropy(logits, target, valid)


class SampledSoftmaxLoss(CandidateLoss):
    """Sampled softmax (Jean et al. 2015; Yi et al. 2019): softmax over sampled candidates
    with the logQ correction ``s - log q`` applied to every candidate, so the sampled loss is
    an unbiased-in-the-limit estimate of the full softmax.

    Args:
        logq_correction: subtract ``log_q`` from the logits (requires a sampler that
            reports sampling probabilities).
    """

    def __init__(self, logq_correction: bool = True) -> None:
        super().__init__()
        self.logq_correction = logq_correction
        # the trainer asks the sampler for log_q only when the correction is on
        self.uses_log_q = logq_correction

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        valid: Tensor | None = None,
        log_q: Tensor | None = None,
    ) -> Tensor:
        _check_shapes(logits, target)
        if self.logq_correction:
            if log_q is None:
                raise InputError(
                    "sampled_softmax with logq_correction=True needs log_q from the sampler; "
                    "use a sampler that reports probabilities or set logq_correction=False"
                )
            logits = logits - log_q
        return _cross_entropy(logits, target, valid)


def shared_negative_logits(
    pos_logit: Tensor,
    neg_logits: Tensor,
    pos_ids: Tensor,
    neg_ids: Tensor,
    neg_log_q: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Loss inputs for ``n`` negatives shared by a batch of ``B`` positives.

    Args:
        pos_logit: ``(B, 1)`` each row's positive logit.
        neg_logits: ``(B, n)`` every row's logits of the shared negatives.
        pos_ids: ``(B,)`` positive ids; neg_ids: ``(n,)`` negative ids (drawn with
            replacement; a draw equal to a row's positive is an accidental hit, masked).
        neg_log_q: ``(n,)`` log sampling probability of each draw (None: no correction).
    Returns:
        ``logits (B, 1 + n)`` (positive in column 0), ``target (B,)`` zeros, ``valid (B, 1 + n)``
        and ``log_q (B, 1 + n)`` or None: the positive uncorrected, each negative by
        ``log(n q_j)``, the importance weight of one of n draws (Jean et al. 2015), so that
        ``E[exp(sampled softmax loss)]`` equals ``exp(full softmax loss)``.
    """
    b, n = neg_logits.shape
    logits = torch.cat([pos_logit, neg_logits], dim=1)  # (B, 1 + n)
    target = torch.zeros(b, dtype=torch.long, device=logits.device)
    hit = neg_ids.view(1, -1) == pos_ids.view(-1, 1)  # (B, n)
    valid = torch.cat([torch.ones_like(hit[:, :1]), ~hit], dim=1)  # (B, 1 + n)
    log_q = None
    if neg_log_q is not None:
        corrected = (neg_log_q.to(logits.dtype) + math.log(n)).view(1, -1).expand(b, -1)
        log_q = torch.cat([logits.new_zeros(b, 1), corrected], dim=1)  # (B, 1 + n)
    return logits, target, valid, log_q


#: The loss each training mode uses when none is given.
DEFAULT_LOSS_BY_MODE = {0: "bce", 1: "bpr", 2: "softmax"}
