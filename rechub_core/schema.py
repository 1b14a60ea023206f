"""What a prepared data set offers to models: column names and vocabulary sizes.

``rechub train --model NAME`` builds any registered model from a :class:`DataSchema` through
its ``ModelSpec.from_schema``; these helpers produce the usual feature declarations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from rechub_core.features import Feature, SequenceFeature, SparseFeature

if TYPE_CHECKING:
    from rechub_core.preprocess import PreparedData

USER_ID = "user_id"
ITEM_ID = "item_id"
HISTORY = "hist_item_id"

#: the user id gets its own embedding in the bag-of-items models' user towers (``pooled_user``)
#: only when users have at least this many training rows on average: MovieLens-100K (~100 a
#: user) gains from it, the 5-core Amazon / Yelp sets (~6 a user) lose half their validation
#: NDCG@10 to a per-user vector that memorises a handful of items
#: (``benchmarks/results/defaults.md``)
MIN_ROWS_FOR_USER_ID = 20


@attrs.frozen
class DataSchema:
    """Columns and vocabulary sizes of a prepared data set.

    Attributes:
        vocab: vocabulary size (incl. padding 0) of every categorical column.
        user_columns: user profile columns (without ``user_id``).
        item_columns: item side columns (without ``item_id``).
        max_len: history length L.
        train_rows: training samples (interactions used as targets); 0 when unknown (a run
            folder written before the field existed).
    """

    vocab: dict[str, int]
    user_columns: tuple[str, ...] = ()
    item_columns: tuple[str, ...] = ()
    max_len: int = 50
    train_rows: int = 0

    @classmethod
    def from_prepared(cls, data: PreparedData) -> DataSchema:
        """The schema of a :class:`~rechub_core.preprocess.PreparedData`."""
        return cls(
            vocab=dict(data.vocab),
            user_columns=tuple(data.user_columns),
            item_columns=tuple(data.item_columns),
            max_len=int(data.max_len),
            train_rows=len(data.train[ITEM_ID]),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, saved in run folders."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSchema:
        """Inverse of :meth:`to_dict`."""
        return cls(
            vocab=dict(d["vocab"]),
            user_columns=tuple(d.get("user_columns", ())),
            item_columns=tuple(d.get("item_columns", ())),
            max_len=int(d.get("max_len", 50)),
            train_rows=int(d.get("train_rows", 0)),
        )

    @property
    def n_items(self) -> int:
        """Number of real items."""
        return self.vocab[ITEM_ID] - 1

    def item_id(self, embed_dim: int) -> SparseFeature:
        """The item id feature."""
        return SparseFeature(ITEM_ID, self.vocab[ITEM_ID], embed_dim)

    def user_id(self, embed_dim: int) -> SparseFeature:
        """The user id feature."""
        return SparseFeature(USER_ID, self.vocab[USER_ID], embed_dim)

    def history(
        self, embed_dim: int, pooling: str | None = "mean", shared: bool = True
    ) -> SequenceFeature:
        """The ordered history ``(B, L)``, sharing the item id table when ``shared``."""
        return SequenceFeature(
            HISTORY,
            self.vocab[ITEM_ID],
            embed_dim,
            pooling=pooling,
            shared_with=ITEM_ID if shared else None,
        )

    def user_profile(self, embed_dim: int) -> list[SparseFeature]:
        """One sparse feature per user profile column."""
        return [SparseFeature(c, self.vocab[c], embed_dim) for c in self.user_columns]

    def uses_user_id(self) -> bool:
        """Whether a user id embedding can be learnt: at least :data:`MIN_ROWS_FOR_USER_ID`
        training rows per user on average (True when the row count is unknown)."""
        users = max(self.vocab.get(USER_ID, 1) - 1, 1)
        return self.train_rows == 0 or self.train_rows / users >= MIN_ROWS_FOR_USER_ID

    def pooled_user(self, embed_dim: int, user_id: bool | None = None) -> list[Feature]:
        """The usual user tower inputs of a bag-of-items model: the user id, the profile
        columns and the mean-pooled history, each ``embed_dim`` wide. ``user_id``: include the
        user id (None: by :meth:`uses_user_id`)."""
        if user_id is None:
            user_id = self.uses_user_id()
        ids = [self.user_id(embed_dim)] if user_id else []
        return [*ids, *self.user_profile(embed_dim), self.history(embed_dim)]

    def item_with_side(self, embed_dim: int) -> list[Feature]:
        """The item id and one sparse feature per item side column (an item tower's inputs)."""
        return [self.item_id(embed_dim), *self.item_side(embed_dim)]

    def item_side(self, embed_dim: int) -> list[SparseFeature]:
        """One sparse feature per item side column."""
        return [SparseFeature(c, self.vocab[c], embed_dim) for c in self.item_columns]
