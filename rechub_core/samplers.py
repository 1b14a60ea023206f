"""Negative samplers: draw candidate item ids for each training batch, vectorised.

``sample(pos_ids, generator, user_vectors=None) -> NegativeSample``. Per-row negatives are
``(B, n)`` and never equal the row's positive (except draws from the hard sampler's pool, which
the trainer masks as it masks any accidental hit); shared negatives ``(n,)`` are used by the whole
batch (the trainer prepends the batch's positives and masks accidental hits). ``log_q(ids)``
returns the log of each id's sampling probability for the logQ correction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch
from torch import Tensor

from rechub_core.errors import InputError

log = logging.getLogger("rechub.samplers")


@attrs.frozen
class NegativeSample:
    """Negatives for one batch.

    Attributes:
        ids: ``(B, n)`` per-row negatives, or ``(n,)`` shared by the batch.
        shared: True for shared negatives.
        batch_positives: True when the other rows' positives also serve as negatives
            (in-batch sampling); accidental hits are masked by the trainer.
        full_catalogue: ``ids`` is every item ``1..n_items-1`` in order, so each row's
            positive already sits at column ``id - 1`` and nothing needs masking.
    """

    ids: Tensor
    shared: bool = False
    batch_positives: bool = False
    full_catalogue: bool = False


def uniform_excluding(pos_ids: Tensor, n: int, n_items: int, generator: torch.Generator) -> Tensor:
    """``(B, n)`` ids drawn uniformly from ``1..n_items-1`` excluding each row's positive.

    ``n_items`` counts the padding id 0. Draws from ``n_items - 2`` values and shifts those at
    or above the positive up by one, so the positive is never drawn and no loop is needed.
    """
    if n_items < 3:
        raise InputError(f"need at least 2 real items to draw negatives, got {n_items - 1}")
    draws = torch.randint(1, n_items - 1, (pos_ids.shape[0], n), generator=generator)  # (B, n)
    return draws + (draws >= pos_ids.view(-1, 1)).long()  # (B, n)


class Sampler:
    """Base class. ``bind`` gives it the catalogue before training starts."""

    n_items: int = 0

    def bind(self, n_items: int, item_counts: Tensor | None = None) -> None:
        """Catalogue size (incl. padding) and ``(n_items,)`` training counts of each item."""
        self.n_items = n_items
        self.item_counts = item_counts

    def on_epoch_start(self, encode_items: Callable[[], Tensor]) -> None:
        """Called before each epoch; ``encode_items()`` returns current item vectors."""

    def sample(
        self, pos_ids: Tensor, generator: torch.Generator, user_vectors: Tensor | None = None
    ) -> NegativeSample:
        raise NotImplementedError

    def log_q(self, ids: Tensor) -> Tensor:
        """Log sampling probability of each id (same shape as ``ids``)."""
        raise InputError(f"{type(self).__name__} does not report sampling probabilities")

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (for samplers that learn, like the streaming estimator)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class NoSampler(Sampler):
    """No negatives: the data carries explicit labels (point-wise mode 0 with ``y``)."""

    def sample(
        self, pos_ids: Tensor, generator: torch.Generator, user_vectors: Tensor | None = None
    ) -> NegativeSample:
        return NegativeSample(ids=pos_ids.new_zeros((pos_ids.shape[0], 0)))


class UniformSampler(Sampler):
    """Uniform over the catalogue, never the positive.

    Args:
        n_neg: negatives per row (``shared=False``) or per batch (``shared=True``).
        shared: one set of negatives for the whole batch (cheaper for large ``n_neg``).
    """

    def __init__(self, n_neg: int = 4, shared: bool = False) -> None:
        if n_neg < 1:
            raise InputError(f"n_neg must be >= 1, got {n_neg}")
        self.n_neg = n_neg
        self.shared = shared

    def sample(
        self, pos_ids: Tensor, generator: torch.Generator, user_vectors: Tensor | None = None
    ) -> NegativeSample:
        if self.shared:
            ids = torch.randint(1, self.n_items, (self.n_neg,), generator=generator)
            return NegativeSample(ids=ids, shared=True)
        return NegativeSample(ids=uniform_excluding(pos_ids, self.n_neg, self.n_items, generator))

    def log_q(self, ids: Tensor) -> Tensor:
        return torch.full(ids.shape, -math.log(max(self.n_items - 1, 1)), device=ids.device)


class FullCatalogueSampler(Sampler):
    """Every item is a candidate: an exact full softmax over the catalogue (the strongest
    list-wise signal; affordable for catalogues up to ~100k items)."""

    def sample(
        self, pos_ids: Tensor, generator: torch.Generator, user_vectors: Tensor | None = None
    ) -> NegativeSample:
        return NegativeSample(ids=torch.arange(1, self.n_items), shared=True, full_catalogue=True)

    def log_q(self, ids: Tensor) -> Tensor:
        return torch.zeros(ids.shape, device=ids.device)


class PopularitySampler(Sampler):
    """Proportional to ``count ** alpha`` (word2vec's 0.75 by default), never the positive.

    Args:
        n_neg: negatives per row.
        alpha: popularity exponent; 0 is uniform.
    """

    def __init__(self, n_neg: int = 4, alpha: float = 0.75) -> None:
        if n_neg < 1:
            raise InputError(f"n_neg must be >= 1, got {n_neg}")
        self.n_neg = n_neg
        self.alpha = alpha
        self.probs: Tensor | None = None
        self.cdf: Tensor | None = None

    def bind(self, n_items: int, item_counts: Tensor | None = None) -> None:
        super().bind(n_items, item_counts)
        if item_counts is None:
            raise InputError("the popularity sampler needs item counts from the training loader")
        weights = item_counts.to(torch.float64).clamp(min=0) ** self.alpha
        weights[0] = 0.0
        if float(weights.sum()) <= 0:
            weights = torch.ones(n_items, dtype=torch.float64)
            weights[0] = 0.0
        probs = weights / weights.sum()
        self.probs = probs.to(torch.float32)
        self.cdf = torch.cumsum(probs, 0)  # (n_items,) float64

    def sample(
        self, pos_ids: Tensor, generator: torch.Generator, user_vectors: Tensor | None = None
    ) -> NegativeSample:
        assert self.probs is not None and self.cdf is not None, "bind() first"
        # exact sampling from the distribution with the positive removed: draw u from the
        # remaining mass, then skip over the positive's interval of the CDF
        p_pos = self.probs[pos_ids].view(-1, 1).to(torch.float64)  # (B, 1)
        before = (self.cdf[pos_ids] - self.probs[pos_ids]).view(-1, 1).to(torch.float64)
        u = torch.rand((pos_ids.shape[0], self.n_neg), generator=generator, dtype=torch.float64)
        u = u * (1.0 - p_pos)  # (B, n)
        u = torch.where(u >= before, u + p_pos, u)
        ids = torch.searchsorted(self.cdf, u.clamp(max=float(self.cdf[-1]) - 1e-12), right=True)
        ids = ids.clamp(1, self.n_items - 1)
        clash = ids == pos_ids.view(-1, 1)  # only from float rounding at interval edges
        if clash.any():
            ids = torch.where(
                clash, uniform_excluding(pos_ids, self.n_neg, self.n_items, generator), ids
            )
        return NegativeSample(ids=ids)

    def log_q(self, ids: Tensor) -> Tensor:
        assert self.probs is not None, "bind() first"
        return torch.log(self.probs.to(ids.device)[ids].clamp(min=1e-12))


class StreamingFrequencyEstimator:
    """Item sampling frequency estimated from the stream of batches (Yi et al., RecSys 2019).

    Hash-based: for each item bucket keep ``A`` (global step of its last occurrence) and ``B``
    (moving average of the steps between occurrences). ``B`` estimates 1 / (probability that a
    batch contains the item), so ``q = 1 / B``.

    Args:
        n_buckets: hash buckets (collisions merge items).
        alpha: learning rate of the moving average.
    """

    def __init__(self, n_buckets: int = 2**20, alpha: float = 0.01) -> None:
        self.n_buckets = n_buckets
        self.alpha = alpha
        self.step = 0
        self.last = torch.zeros(n_buckets, dtype=torch.float64)
        self.delta = torch.full((n_buckets,), 0.0, dtype=torch.float64)

    def _bucket(self, ids: Tensor) -> Tensor:
        # a multiplicative hash; exact for catalogues smaller than n_buckets
        return (ids.to(torch.int64) * 2654435761) % self.n_buckets

    def update(self, ids: Tensor) -> None:
        """Observe one batch of item ids ``(B,)`` (duplicates count once)."""
        self.step += 1
        buckets = torch.unique(self._bucket(ids.reshape(-1).cpu()))
        seen = self.last[buckets] > 0
        gap = self.step - self.last[buckets]
        fresh = torch.where(seen, gap, torch.full_like(gap, float(self.step)))
        first = self.delta[buckets] == 0
        updated = torch.where(
            first, fresh, (1 - self.alpha) * self.delta[buckets] + self.alpha * fresh
        )
        self.delta[buckets] = updated
        self.last[buckets] = float(self.step)

    def probability(self, ids: Tensor) -> Tensor:
        """Estimated probability that a batch contains each id; same shape as ``ids``."""
        d = self.delta[self._bucket(ids.cpu())]
        q = torch.where(d > 0, 1.0 / d.clamp(min=1.0), torch.ones_like(d))
        return q.to(torch.float32).to(ids.device)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and step counter, for checkpoints."""
        return {"step": self.step, "last": self.last.clone(), "delta": self.delta.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.step = int(state["step"])
        self.last = state["last"].clone()
        self.delta = state["delta"].clone()


class InBatchSampler(Sampler):
    """In-batch negatives: the other rows' positives (accidental hits masked by the trainer).

    Args:
        frequency: "counts" (training counts, exact unigram) or "streaming" (the hash-based
            estimator of Yi et al. 2019) for ``log_q``.
        n_buckets, alpha: streaming estimator settings.
    """

    def __init__(
        self, frequency: str = "counts", n_buckets: int = 2**20, alpha: float = 0.01
    ) -> None:
        if frequency not in ("counts", "streaming"):
            raise InputError(f"frequency must be 'counts' or 'streaming', got {frequency!r}")
        self.frequency = frequency
        self.estimator = StreamingFrequencyEstimator(n_buckets, alpha)
        self.batch_size = 1
        self.unigram: Tensor | None = None

    def bind(self, n_items: int, item_counts: Tensor | None = None) -> None:
        super().bind(n_items, item_counts)
        if self.frequency == "counts":
            if item_counts is None:
                raise InputError("frequency='counts' needs item counts from the training loader")
            c = item_counts.to(torch.float64).clamp(min=0)
            self.unigram = (c / c.sum().clamp(min=1)).to(torch.float32)

    def sample(
        self, pos_ids: Tensor, generator: torch.Generator, user_vectors: Tensor | None = None
    ) -> NegativeSample:
        self.batch_size = pos_ids.shape[0]
        if self.frequency == "streaming":
            self.estimator.update(pos_ids)
        return NegativeSample(ids=pos_ids.new_zeros((0,)), shared=True, batch_positives=True)

    def log_q(self, ids: Tensor) -> Tensor:
        if self.frequency == "streaming":
            q = self.estimator.probability(ids)  # P(item in batch)
        else:
            assert self.unigram is not None, "bind() first"
            q = self.unigram.to(ids.device)[ids] * self.batch_size  # expected count in batch
        return torch.log(q.clamp(min=1e-12))

    def state_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "estimator" in state:
            self.estimator.load_state_dict(state["estimator"])


class MixedSampler(InBatchSampler):
    """Mixed negative sampling (Yang et al., WWW 2020): in-batch plus ``n_uniform`` shared
    uniform negatives, which reach the long tail that in-batch sampling rarely shows.
    """

    def __init__(self, n_uniform: int = 128, frequency: str = "counts") -> None:
        super().__init__(frequency=frequency)
        if n_uniform < 1:
            raise InputError(f"n_uniform must be >= 1, got {n_uniform}")
        self.n_uniform = n_uniform

    def sample(
        self, pos_ids: Tensor, generator: torch.Generator, user_vectors: Tensor | None = None
    ) -> NegativeSample:
        super().sample(pos_ids, generator)
        ids = torch.randint(1, self.n_items, (self.n_uniform,), generator=generator)
        return NegativeSample(ids=ids, shared=True, batch_positives=True)

    def log_q(self, ids: Tensor) -> Tensor:
        in_batch = super().log_q(ids).exp()
        uniform = self.n_uniform / max(self.n_items - 1, 1)
        return torch.log(in_batch + uniform)


class HardNegativeSampler(Sampler):
    """Hard negatives mined from the current item vectors (Huang et al., KDD 2020), mixed
    with uniform ("easy") ones: for each row, ``n_hard`` items drawn from ranks
    ``[rank_from, rank_to)`` of the user's scores (skipping the very top, which holds
    unlabelled positives), plus ``n_neg - n_hard`` uniform negatives. Item vectors are
    refreshed at the start of every epoch.

    Args:
        n_neg: negatives per row, hard and easy together.
        n_hard: mined negatives per row.
        rank_from, rank_to: the band of catalogue ranks (0 = the user's best-scored item).
        pool: 0, or the size ``P`` of a uniform pool of items drawn once a batch. With a pool
            smaller than the catalogue, each row draws its easy negatives from the pool and
            mines its hard ones among the pool's items, at the pool ranks that correspond to
            the band (``[rank_from, rank_to) x P / catalogue``: a uniform sample of P items
            holds that many items above a given catalogue rank, in expectation). A step then
            encodes at most ``P + 2B`` distinct items and scores ``B x P`` pairs, instead of
            ``~B (1 + n_neg)`` items and ``B x catalogue`` pairs. Measured on Toys_and_Games
            in ``benchmarks/results/defaults.md`` (FaceBookDSSM).
    """

    def __init__(
        self,
        n_neg: int = 8,
        n_hard: int = 2,
        rank_from: int = 10,
        rank_to: int = 100,
        pool: int = 0,
    ) -> None:
        if not 0 <= n_hard <= n_neg:
            raise InputError(f"need 0 <= n_hard <= n_neg, got n_hard={n_hard}, n_neg={n_neg}")
        if not 0 <= rank_from < rank_to:
            raise InputError(f"need 0 <= rank_from < rank_to, got {rank_from}, {rank_to}")
        if pool < 0:
            raise InputError(f"pool must be 0 (no pool) or a number of items, got {pool}")
        self.n_neg, self.n_hard = n_neg, n_hard
        self.rank_from, self.rank_to = rank_from, rank_to
        self.pool = pool
        self.item_vectors: Tensor | None = None

    def on_epoch_start(self, encode_items: Callable[[], Tensor]) -> None:
        self.item_vectors = encode_items().detach()  # (n_items, D)

    def sample(
        self, pos_ids: Tensor, generator: torch.Generator, user_vectors: Tensor | None = None
    ) -> NegativeSample:
        pool = None
        if 0 < self.pool < self.n_items - 1:  # else the whole catalogue is cheaper and exact
            pool = torch.randint(1, self.n_items, (self.pool,), generator=generator)  # (P,)
        b = pos_ids.shape[0]
        if pool is None:
            easy = uniform_excluding(pos_ids, self.n_neg, self.n_items, generator)  # (B, n_neg)
        else:  # a draw equal to the row's positive is masked by the trainer
            easy = pool[torch.randint(0, pool.numel(), (b, self.n_neg), generator=generator)]
        hard = self._mine(pool, user_vectors, generator)  # (B, n_hard) or None
        if hard is None:
            return NegativeSample(ids=easy)
        # a mined item equal to the row's positive is replaced by the row's first easy ones
        hard = torch.where(hard == pos_ids.view(-1, 1).cpu(), easy[:, : self.n_hard], hard)
        return NegativeSample(ids=torch.cat([hard, easy[:, self.n_hard :]], dim=1))

    def _mine(
        self, pool: Tensor | None, user_vectors: Tensor | None, generator: torch.Generator
    ) -> Tensor | None:
        """``(B, n_hard)`` items from the rank band of each row's scores over the catalogue
        (or over ``pool``, at the scaled band); None before item vectors exist."""
        if self.n_hard == 0 or self.item_vectors is None or user_vectors is None:
            return None
        items = self.item_vectors if pool is None else self.item_vectors[pool]  # (N or P, D)
        u = user_vectors.detach()
        # (B, N) or (B, P); multi-interest users (B, K, D): an item scores its best interest's
        scores = torch.einsum("bkd,nd->bkn", u, items).amax(1) if u.dim() == 3 else u @ items.T
        if pool is None:
            scores[:, 0] = -torch.inf
            lo, hi = self.rank_from, min(self.rank_to, scores.shape[1] - 1)
        else:
            scale = pool.numel() / (self.n_items - 1)
            lo = int(self.rank_from * scale)
            hi = min(pool.numel(), max(lo + 1, round(self.rank_to * scale)))
        if hi <= lo:
            return None
        ranked = scores.topk(hi, dim=1).indices[:, lo:]  # (B, R)
        pick = torch.randint(0, ranked.shape[1], (u.shape[0], self.n_hard), generator=generator)
        hard = ranked.gather(1, pick.to(ranked.device)).cpu()  # (B, n_hard) columns of scores
        return hard if pool is None else pool[hard]


#: The documented rule of :class:`AutoSoftmaxSampler`: catalogues of at most this many items
#: (padding excluded) train with an exact full softmax, larger ones with a sampled softmax over
#: negatives shared by the batch. A full softmax costs ``rows x items`` logits a step (and, for
#: a model with an item MLP such as DSSM, the item tower over the whole catalogue); below a few
#: thousand items that is cheap and exact. Measured on Toys_and_Games (11,924 items; validation
#: NDCG@10 to early stopping, ``benchmarks/results/defaults.md``): DSSM with 512 shared
#: uniform negatives at temperature 0.05 reached 0.0260 at 5 s an epoch, against 0.0237 and
#: 27 s for the full softmax at temperature 0.02. Models trained on every position of a
#: sequence gain more from the full softmax (SASRec 0.0718 full vs 0.0678 with 2,048 and
#: 0.0623 with 512 negatives), so the sequential family raises the bound to 25,000 in its
#: ``train_defaults`` (``sampler_params={"max_full_items": 25_000}``).
FULL_SOFTMAX_MAX_ITEMS = 5_000
#: what the rule samples above it: "uniform" (shared uniform negatives) or "mixed" (the other
#: rows' positives plus shared uniform negatives, Yang et al. 2020)
SAMPLED_KIND = "uniform"


class AutoSoftmaxSampler(Sampler):
    """Full softmax or sampled softmax, picked from the catalogue size when training starts.

    Catalogues of at most ``max_full_items`` real items (default
    :data:`FULL_SOFTMAX_MAX_ITEMS`, 5,000) get every item as a candidate
    (:class:`FullCatalogueSampler`: an exact softmax, as MovieLens-100K's 1,682 items are
    trained); larger ones ``n_neg`` uniform negatives shared by the whole batch
    (:class:`UniformSampler` with ``shared=True``: one ``(B, n_neg)`` matmul a step; each
    row's positive is scored on its own and accidental hits are masked). Uniform sampling
    probabilities are equal, so the logQ correction (``sampled_softmax``) only shifts every
    negative against the positive by the same ``log(N / n_neg)`` (it is applied to the
    negatives only); measured, it changes little (``benchmarks/results/sampled_softmax_notes.md``,
    which also shows that with cosine scores at temperature 0.02 sampled training lags the full
    softmax, and with a softer temperature or a dot product it does not: the models' defaults
    are chosen so). Ask for either explicitly with sampler ``full`` or ``uniform``
    (``shared=true``).

    Args:
        max_full_items: the largest catalogue trained with a full softmax.
        n_neg: shared negatives per batch above it.
    """

    def __init__(
        self,
        max_full_items: int = FULL_SOFTMAX_MAX_ITEMS,
        n_neg: int = 512,
        sampled: str = SAMPLED_KIND,
    ) -> None:
        if max_full_items < 0:
            raise InputError(f"max_full_items must be >= 0, got {max_full_items}")
        if n_neg < 1:
            raise InputError(f"n_neg must be >= 1, got {n_neg}")
        if sampled not in ("uniform", "mixed"):
            raise InputError(f"sampled must be 'uniform' or 'mixed', got {sampled!r}")
        self.max_full_items = max_full_items
        self.n_neg = n_neg
        self.sampled = sampled
        self.chosen: Sampler | None = None

    @property
    def choice(self) -> str:
        """``"full"`` or ``"sampled"`` once bound, ``""`` before."""
        if self.chosen is None:
            return ""
        return "full" if isinstance(self.chosen, FullCatalogueSampler) else "sampled"

    def bind(self, n_items: int, item_counts: Tensor | None = None) -> None:
        super().bind(n_items, item_counts)
        if n_items - 1 <= self.max_full_items:
            self.chosen = FullCatalogueSampler()
        elif self.sampled == "mixed":
            self.chosen = MixedSampler(n_uniform=self.n_neg)
        else:
            self.chosen = UniformSampler(n_neg=self.n_neg, shared=True)
        self.chosen.bind(n_items, item_counts)
        log.info(
            "softmax: %s (%d items; full up to %d, else %s with %d shared uniform negatives)",
            self.choice,
            n_items - 1,
            self.max_full_items,
            self.sampled,
            self.n_neg,
        )

    def state_dict(self) -> dict[str, Any]:
        return self.chosen.state_dict() if self.chosen is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._inner().load_state_dict(state)

    def _inner(self) -> Sampler:
        if self.chosen is None:
            raise InputError("the auto sampler was used before bind(); the trainer binds it")
        return self.chosen

    def on_epoch_start(self, encode_items: Callable[[], Tensor]) -> None:
        self._inner().on_epoch_start(encode_items)

    def sample(
        self, pos_ids: Tensor, generator: torch.Generator, user_vectors: Tensor | None = None
    ) -> NegativeSample:
        return self._inner().sample(pos_ids, generator, user_vectors)

    def log_q(self, ids: Tensor) -> Tensor:
        return self._inner().log_q(ids)


#: The sampler each training mode uses when none is given, with its parameters.
DEFAULT_SAMPLER_BY_MODE: dict[int, tuple[str, dict[str, Any]]] = {
    0: ("uniform", {"n_neg": 4}),
    1: ("uniform", {"n_neg": 4}),
    2: ("uniform", {"n_neg": 256, "shared": True}),
}
