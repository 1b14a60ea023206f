"""The model checks about encoding: shapes, padding, recency, batch independence and
step-wise encoding (``encode_user_steps``).

PYTEST_DONT_REWRITE: like the package, pytest need not rewrite it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rechub_core.model import MatchModel
from rechub_core.testing._context import (
    ATOL,
    ITEM_ROWS,
    LONG_HISTORY,
    USER_ROWS,
    Context,
    max_diff,
    user_sequences,
)
from rechub_core.testing._report import CheckFailed, CheckSkipped


def _check_shapes(ctx: Context) -> None:
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


def _with_sequences(ctx: Context) -> tuple[MatchModel, dict[str, Tensor], list[str]]:
    """A fresh model in eval mode, a user batch and its sequence features' names; skips the
    check (:class:`CheckSkipped`) when the user side has none."""
    model = ctx.build().eval()
    users = ctx.users()
    names = user_sequences(model, users)
    if not names:
        raise CheckSkipped("the user side has no sequence features")
    return model, users, names


def _check_padding(ctx: Context) -> None:
    model, users, names = _with_sequences(ctx)
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
                diff = max_diff(model.encode_user(short), model.encode_user(padded))
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


def _check_recency(ctx: Context) -> None:
    model, users, names = _with_sequences(ctx)
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
        if not max_diff(before, after) > ATOL:
            raise CheckFailed(
                f"in {LONG_HISTORY}-item histories {name!r}, changing only the newest (last) "
                "item did not change any user vector: the model reads the oldest items",
                "keep the newest max_len items, not the first ones: histories are oldest "
                "first, right-padded with 0 (docs/protocol.md); read them through "
                "rechub_core.history (HistoryEncoder, or compact(seq, max_len))",
            )


def _check_batch(ctx: Context) -> None:
    model = ctx.build().eval()
    for side, batch, encode in (
        ("user", ctx.users(), model.encode_user),
        ("item", ctx.items(), model.encode_item),
    ):
        with torch.no_grad():
            full = encode(batch)
            again = encode(batch)
            if max_diff(full, again) > 0:
                raise CheckFailed(
                    f"encoding the same {side}s twice in eval mode gave different vectors",
                    "make eval-mode encoding deterministic: no dropout or sampling outside "
                    "training mode (use nn.Dropout, or check self.training)",
                )
            n = next(iter(batch.values())).shape[0]
            for i in range(n):
                one = encode({k: v[i : i + 1] for k, v in batch.items()})
                diff = max_diff(one[0], full[i])
                if not diff <= ATOL:
                    raise CheckFailed(
                        f"{side} row {i} encoded alone differs from the same row inside a "
                        f"batch of {n} by {diff:.2e}",
                        "rows must not interact in eval mode: no statistics over the batch "
                        "axis (BatchNorm uses running stats in eval), no reductions over dim 0",
                    )


def _check_steps(ctx: Context) -> None:
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
    diff = max_diff(at_last, user)
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
        diff = max_diff(other[:, : t + 1], steps[:, : t + 1])
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
        diff = max_diff(steps[:, t], model.encode_user(prefix))
    if not diff <= ATOL:
        raise CheckFailed(
            f"encode_user_steps at position {t} differs by {diff:.2e} from encode_user of the "
            f"history cut after position {t}",
            "the state after position t must be the user vector of the first t + 1 items "
            "(training targets are scored with it); count positions the same way in both",
        )


#: the encoding checks by name, in the order they run
ENCODING_CHECKS: dict[str, Callable[[Context], None]] = {
    "shapes": _check_shapes,
    "padding": _check_padding,
    "recency": _check_recency,
    "batch": _check_batch,
    "steps": _check_steps,
}
