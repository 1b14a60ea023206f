"""Feature declarations (names and arguments follow Torch-RecHub's).

A model is declared over lists of features; the embedding layer builds one table per sparse or
sequence feature (or reuses another's table through ``shared_with``). Id 0 is padding in every
table and is masked in every pooling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from rechub_core.errors import InputError

POOLINGS = ("mean", "sum", "concat", None)


def _name(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name} must be a non-empty string, got {value!r}"
        )


def _positive_int(minimum: int) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(
                f"{type(instance).__name__}({instance.name!r}).{attribute.name} must be an "
                f"integer >= {minimum}, got {value!r}"
                + (
                    " (vocab_size counts the padding id 0 too)"
                    if attribute.name == "vocab_size"
                    else ""
                )
            )

    return check


def _shared(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or value == instance.name):
        raise ValueError(
            f"{type(instance).__name__}({instance.name!r}).shared_with must name another "
            f"feature whose table to reuse, got {value!r}"
        )


@attrs.frozen
class SparseFeature:
    """A categorical feature: one id per row, ``x[name]`` of shape ``(B,)`` int64.

    Attributes:
        name: column name in the batch.
        vocab_size: number of ids including the padding id 0 (ids are in ``[0, vocab_size)``).
        embed_dim: embedding width D.
        shared_with: name of another feature whose table this one reuses.
    """

    name: str = attrs.field(validator=_name)
    vocab_size: int = attrs.field(validator=_positive_int(2))
    embed_dim: int = attrs.field(validator=_positive_int(1))
    shared_with: str | None = attrs.field(default=None, validator=_shared)


@attrs.frozen
class DenseFeature:
    """A numeric feature: ``x[name]`` of shape ``(B,)`` or ``(B, embed_dim)`` float32.

    Attributes:
        name: column name in the batch.
        embed_dim: number of values per row.
    """

    name: str = attrs.field(validator=_name)
    embed_dim: int = attrs.field(default=1, validator=_positive_int(1))


def _pooling(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in POOLINGS:
        raise ValueError(
            f"SequenceFeature({instance.name!r}).pooling must be one of "
            f"'mean', 'sum', 'concat' or None, got {value!r}"
        )


@attrs.frozen
class SequenceFeature:
    """A list of ids per row, ``x[name]`` of shape ``(B, L)`` int64, padded with 0.

    Attributes:
        name: column name in the batch.
        vocab_size: number of ids including the padding id 0.
        embed_dim: embedding width D.
        pooling: "mean" / "sum" -> ``(B, D)`` over real (non-zero) ids; "concat" -> ``(B, L*D)``
            (fixed L); None -> the sequence ``(B, L, D)`` for sequence encoders.
        shared_with: name of another feature whose table this one reuses (e.g. the item id).
    """

    name: str = attrs.field(validator=_name)
    vocab_size: int = attrs.field(validator=_positive_int(2))
    embed_dim: int = attrs.field(validator=_positive_int(1))
    pooling: str | None = attrs.field(default="mean", validator=_pooling)
    shared_with: str | None = attrs.field(default=None, validator=_shared)


Feature = SparseFeature | DenseFeature | SequenceFeature


def item_id_feature(item_features: Sequence[Feature], where: str = "model") -> SparseFeature:
    """The item id of a model's item side: its first :class:`SparseFeature`.

    Raises:
        InputError: naming ``where`` when ``item_features`` has no sparse feature.
    """
    ids = [f for f in item_features if isinstance(f, SparseFeature)]
    if not ids:
        raise InputError(
            f"{where} item_features must contain the item id SparseFeature (the first sparse "
            "feature is used as the id)"
        )
    return ids[0]
