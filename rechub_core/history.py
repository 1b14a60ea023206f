"""The history contract (``docs/protocol.md``), enforced in one place.

A history is a ``(B, L)`` tensor of item ids, **oldest first, right-padded with 0** (what
:func:`rechub_core.preprocess.prepare` writes). Encoders that read the order of a history do not
trust the layout: :class:`HistoryEncoder` *compacts* every history first (real ids to the front
in their order, padding to the back, only the ``max_len`` most recent real ids kept), so left,
right or scattered padding and histories longer than the model's window give the user vector of
the newest ``max_len`` items. Positions counted on a compacted history start at the oldest kept
item whatever the input layout.

Compaction is a scatter of each real id to its rank among the real ids (no data-dependent
shapes, no sort), so encoders stay exportable to ONNX with a dynamic sequence axis.

Shapes: B batch, L input length, L' compacted length ``min(L, max_len)``, D width.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from rechub_core.errors import InputError
from rechub_core.features import Feature, SequenceFeature
from rechub_core.layers import EmbeddingLayer, l2_normalize
from rechub_core.towers import Tower

_F = TypeVar("_F", bound=Callable[..., Any])


def find_history(features: Sequence[Feature], where: str) -> SequenceFeature:
    """The ordered history among ``features``: the one ``SequenceFeature`` with ``pooling=None``.

    Raises:
        InputError: naming ``where`` when there is none or more than one.
    """
    found = [f for f in features if isinstance(f, SequenceFeature) and f.pooling is None]
    if len(found) != 1:
        names = ", ".join(f.name for f in found) or "none"
        raise InputError(
            f"{where} needs exactly one SequenceFeature with pooling=None (the ordered "
            f"history, e.g. SequenceFeature('hist_item_id', n_items, dim, pooling=None, "
            f"shared_with='item_id')); found {names}"
        )
    return found[0]


def compact(seq: Tensor, max_len: int | None = None) -> tuple[Tensor, Tensor]:
    """Move the real ids of each row to the front, keeping their order and only the
    ``max_len`` most recent ones.

    Args:
        seq: ``(B, L)`` ids, 0 = padding anywhere.
        max_len: how many of the most recent real ids to keep (None: all).
    Returns:
        ``compacted (B, L')`` ids with ``L' = min(L, max_len)``, real first, then 0; and
        ``dest (B, L)``, the column each input position went to (dropped and padding
        positions point past the kept ones, clamped to the last column).
    """
    real = seq != 0  # (B, L)
    count = real.long().cumsum(dim=1)  # (B, L): real ids at or before each position
    total = count[:, -1:]  # (B, 1)
    if max_len is None:
        keep, n_kept, rank = real, total, count - 1
    else:
        keep = real & (total - count < max_len)  # (B, L): the max_len most recent
        n_dropped = (total - max_len).clamp(min=0)  # (B, 1)
        rank = count - 1 - n_dropped  # (B, L): column of a kept id
        n_kept = total - n_dropped  # (B, 1)
    pad_rank = n_kept + (~keep).long().cumsum(dim=1) - 1  # (B, L): columns after the kept ids
    dest = torch.where(keep, rank, pad_rank)  # (B, L): a permutation of 0..L-1 per row
    out = torch.zeros_like(seq).scatter(1, dest, seq * keep.long())  # (B, L)
    if max_len is None:
        return out, dest
    # traced graphs slice by max_len (a constant) so that the length axis stays dynamic
    width = max_len if torch.jit.is_tracing() else min(seq.shape[1], max_len)
    return out[:, :width], dest.clamp(max=width - 1)


def restore_layout(values: Tensor, dest: Tensor) -> Tensor:
    """Per-position values of a compacted history back in the input's layout.

    Args:
        values: ``(B, L', ...)`` one entry per compacted position.
        dest: ``(B, L)`` from :func:`compact`.
    Returns:
        ``(B, L, ...)``: input position ``j`` gets ``values[:, dest[:, j]]``.
    """
    index = dest.view(*dest.shape, *([1] * (values.dim() - 2)))  # (B, L, 1, ...)
    return values.gather(1, index.expand(*dest.shape, *values.shape[2:]))


def last_position(mask: Tensor) -> Tensor:
    """Index of the newest real item of compacted histories: ``(B, L')`` mask -> ``(B,)``
    (0 for an empty history)."""
    return (mask.long().sum(dim=1) - 1).clamp(min=0)


class HistoryEncoder(Tower):
    """Base class of every user encoder that reads an ordered history (the sequential and the
    multi-interest families): it finds the history among the features and reads it under the
    contract above (checked ids, compacted, newest ``max_len`` kept, embedded).

    Args:
        features: user features; exactly one ``SequenceFeature`` with ``pooling=None``.
        embed_dim: D, the width of the user vectors; None takes the history's ``embed_dim``.
        max_len: longest history read (None: unlimited).
        normalize: L2-normalise the output (cosine scoring).

    Attributes:
        history: the history feature.
        output_dim: D.
    """

    #: name used in error messages
    model_name: ClassVar[str] = "history encoder"

    def __init__(
        self,
        features: Sequence[Feature],
        embed_dim: int | None = None,
        max_len: int | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.history: SequenceFeature = find_history(features, self.model_name)
        width = self.history.embed_dim if embed_dim is None else embed_dim
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise InputError(f"{self.model_name}: embed_dim must be an int >= 1, got {width!r}")
        if max_len is not None and (not isinstance(max_len, int) or max_len < 1):
            raise InputError(f"{self.model_name}: max_len must be an int >= 1, got {max_len!r}")
        self.features = list(features)
        self.output_dim: int = width
        self.max_len = max_len
        self.normalize = normalize

    @property
    def history_name(self) -> str:
        """Name of the history input."""
        return self.history.name

    def read_history(
        self, x: Mapping[str, Tensor], embedding: EmbeddingLayer
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The compacted, embedded history.

        Returns:
            ``emb (B, L', E)`` (E the table's width) with zeros at padding, ``mask (B, L')``
            True at real items (a prefix of each row), ``dest (B, L)`` where each input
            position went (see :func:`restore_layout`).
        """
        seq = embedding.ids(x, self.history_name)  # (B, L), range-checked eagerly
        if seq.dim() != 2:
            raise InputError(
                f"history {self.history_name!r} must be (B, L) item ids, got {tuple(seq.shape)}"
            )
        ids, dest = compact(seq, self.max_len)  # (B, L'), (B, L)
        mask = ids != 0  # (B, L')
        emb = embedding.table(self.history_name)(ids)  # (B, L', E)
        return emb * mask.unsqueeze(-1).to(emb.dtype), mask, dest

    def finish(self, vec: Tensor) -> Tensor:
        """The output as configured: L2-normalised over the last axis when ``normalize``."""
        return l2_normalize(vec) if self.normalize else vec


def renamed_keywords(**renames: str) -> Callable[[_F], _F]:
    """Keep old keyword names of a constructor working, with a DeprecationWarning:
    ``@renamed_keywords(embedding_dim="embed_dim")`` on ``__init__`` maps ``embedding_dim=32``
    to ``embed_dim=32`` (giving both is an error)."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise InputError(
                        f"{fn.__qualname__}: give {new}= only ({old}= is its old name)"
                    )
                warnings.warn(
                    f"{fn.__qualname__}: {old}= is deprecated, use {new}=",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap
