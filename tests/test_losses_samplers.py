"""Losses and samplers: exact values, masking, logQ correction, and sampler properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from rechub_core.errors import InputError
from rechub_core.losses import BCELoss, BPRLoss, HingeLoss, SampledSoftmaxLoss, SoftmaxLoss
from rechub_core.plugins import create
from rechub_core.samplers import (
    FullCatalogueSampler,
    HardNegativeSampler,
    InBatchSampler,
    PopularitySampler,
    StreamingFrequencyEstimator,
    UniformSampler,
    uniform_excluding,
)


def test_softmax_equals_cross_entropy_and_masks_candidates() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.2, 3.0]])
    target = torch.tensor([0, 2])
    assert SoftmaxLoss()(logits, target) == pytest.approx(F.cross_entropy(logits, target).item())
    valid = torch.tensor([[True, False, True], [True, True, True]])
    expected = F.cross_entropy(torch.tensor([[2.0, 0.5], [0.1, 0.2]]), torch.tensor([0, 0]))
    # row 2 keeps 3 candidates; compute it separately
    row1 = F.cross_entropy(torch.tensor([[2.0, 0.5]]), torch.tensor([0]))
    row2 = F.cross_entropy(logits[1:], target[1:])
    got = SoftmaxLoss()(logits, target, valid)
    assert got.item() == pytest.approx(((row1 + row2) / 2).item(), rel=1e-5)
    assert not math.isclose(got.item(), expected.item())
    # an all-True mask and no mask (the full-softmax fast path) give the same loss
    every = torch.ones_like(valid)
    assert SoftmaxLoss()(logits, target, every).item() == SoftmaxLoss()(logits, target).item()
    with pytest.raises(InputError, match="logits must be"):  # shapes are checked without a mask
        SoftmaxLoss()(logits[0], target)


def test_sampled_softmax_subtracts_exactly_log_q() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    log_q = torch.log(torch.tensor([[0.5, 0.1, 0.01]]))
    target = torch.tensor([1])
    got = SampledSoftmaxLoss(logq_correction=True)(logits, target, None, log_q)
    assert got.item() == pytest.approx(F.cross_entropy(logits - log_q, target).item(), rel=1e-6)
    plain = SampledSoftmaxLoss(logq_correction=False)(logits, target, None, log_q)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    with pytest.raises(InputError, match="log_q"):
        SampledSoftmaxLoss()(logits, target)


def test_pairwise_and_pointwise_values() -> None:
    logits = torch.tensor([[2.0, 1.0, -1.0]])
    target = torch.tensor([0])
    bpr = -(F.logsigmoid(torch.tensor(1.0)) + F.logsigmoid(torch.tensor(3.0))) / 2
    assert BPRLoss()(logits, target).item() == pytest.approx(bpr.item(), rel=1e-6)
    assert HingeLoss(margin=1.5)(logits, target).item() == pytest.approx((0.5 + 0.0) / 2)
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    bce = F.binary_cross_entropy_with_logits(logits, labels)
    assert BCELoss()(logits, target).item() == pytest.approx(bce.item(), rel=1e-6)
    # a masked negative does not count
    valid = torch.tensor([[True, False, True]])
    assert BPRLoss()(logits, target, valid).item() == pytest.approx(
        -F.logsigmoid(torch.tensor(3.0)).item()
    )


def test_losses_are_registered_by_name() -> None:
    assert isinstance(create("loss", "Sampled_Softmax", logq_correction=False), SampledSoftmaxLoss)
    assert isinstance(create("sampler", "in-batch"), InBatchSampler)


@settings(max_examples=50, deadline=None)
@given(
    n_items=st.integers(3, 500),
    batch=st.integers(1, 64),
    n=st.integers(1, 32),
    seed=st.integers(0, 2**16),
)
def test_uniform_negatives_never_equal_the_positive(
    n_items: int, batch: int, n: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(1, n_items, (batch,), generator=g)
    neg = uniform_excluding(pos, n, n_items, g)
    assert neg.shape == (batch, n)
    assert bool((neg != pos.view(-1, 1)).all())
    assert int(neg.min()) >= 1 and int(neg.max()) < n_items


def test_uniform_excluding_covers_every_other_item_evenly() -> None:
    g = torch.Generator().manual_seed(0)
    pos = torch.full((20000,), 3)
    counts = torch.bincount(uniform_excluding(pos, 5, 7, g).view(-1), minlength=7).float()
    assert counts[0] == 0 and counts[3] == 0
    share = counts[[1, 2, 4, 5, 6]] / counts.sum()
    assert torch.allclose(share, torch.full((5,), 0.2), atol=0.01)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), alpha=st.sampled_from([0.0, 0.5, 1.0]))
def test_popularity_sampler_follows_counts_and_avoids_positive(seed: int, alpha: float) -> None:
    counts = torch.tensor([0.0, 100.0, 50.0, 10.0, 1.0, 1000.0])  # the positive is the head item
    sampler = PopularitySampler(n_neg=8, alpha=alpha)
    sampler.bind(6, counts)
    g = torch.Generator().manual_seed(seed)
    pos = torch.full((4000,), 5)
    neg = sampler.sample(pos, g).ids
    assert bool((neg != 5).all()) and bool((neg != 0).all())
    freq = torch.bincount(neg.view(-1), minlength=6).float()[1:5]
    want = counts[1:5] ** alpha
    assert torch.allclose(freq / freq.sum(), want / want.sum(), atol=0.03)
    assert sampler.log_q(torch.tensor([1])).item() == pytest.approx(
        math.log(float(counts[1] ** alpha / (counts[1:] ** alpha).sum()))
    )


@settings(max_examples=5, deadline=None)
@given(
    rates=st.lists(st.floats(0.05, 0.9), min_size=3, max_size=8),
    seed=st.integers(0, 2**16),
)
def test_streaming_estimator_converges_to_true_rates(rates: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    est = StreamingFrequencyEstimator(n_buckets=1 << 12, alpha=0.02)
    ids = torch.arange(1, len(rates) + 1)
    for _ in range(2000):
        present = rng.random(len(rates)) < np.array(rates)
        batch = ids[torch.as_tensor(present)]
        est.update(batch if len(batch) else torch.tensor([999]))
    got = est.probability(ids).numpy()
    assert np.allclose(got, rates, rtol=0.25, atol=0.02)


def test_in_batch_sampler_log_q_from_counts() -> None:
    sampler = InBatchSampler(frequency="counts")
    sampler.bind(4, torch.tensor([0.0, 1.0, 1.0, 2.0]))
    neg = sampler.sample(torch.tensor([1, 3]), torch.Generator())
    assert neg.shared and neg.batch_positives and neg.ids.numel() == 0
    # q = unigram probability x batch size (expected count in a batch of 2)
    assert torch.allclose(sampler.log_q(torch.tensor([3])), torch.log(torch.tensor([0.5 * 2])))


def test_full_sampler_lists_every_item() -> None:
    sampler = FullCatalogueSampler()
    sampler.bind(6)
    neg = sampler.sample(torch.tensor([2]), torch.Generator())
    assert neg.shared and neg.ids.tolist() == [1, 2, 3, 4, 5]


def test_hard_negatives_come_from_the_requested_ranks() -> None:
    items = torch.eye(12)[:, :12]  # item i has a one-hot vector; scores = user weights
    user = torch.linspace(1.0, 0.0, 12).view(1, -1)  # item 1 best, then 2, ...; 0 is padding
    sampler = HardNegativeSampler(n_neg=4, n_hard=4, rank_from=2, rank_to=6)
    sampler.bind(12)
    sampler.on_epoch_start(lambda: items)
    neg = sampler.sample(torch.tensor([11]), torch.Generator().manual_seed(0), user_vectors=user)
    assert set(neg.ids.view(-1).tolist()) <= {3, 4, 5, 6}  # ranks 2..5 of items 1..11


def _ranked_catalogue(n: int) -> tuple[Tensor, Tensor]:
    """Item vectors ``(n, 2)`` where item i scores above item i + 1 for the user ``(1, 0)``
    (so item i sits at catalogue rank i - 1), and that user's vector, shape ``(1, 2)``."""
    items = torch.zeros(n, 2)
    items[1:, 0] = torch.linspace(1.0, 0.0, n - 1)
    return items, torch.tensor([[1.0, 0.0]])


def test_pool_mining_hits_the_rank_band_in_expectation() -> None:
    """With a pool of 100 of 1,000 items, hard negatives come from pool ranks 10-19, which a
    uniform pool places around catalogue ranks 100-199: the mean mined id is near 150 (exact
    mining without a pool: every id in 101..200), and every negative of a batch is one of the
    pool's items (at most P distinct)."""
    items, user = _ranked_catalogue(1001)
    means = {}
    for pool in (0, 100):
        sampler = HardNegativeSampler(n_neg=8, n_hard=1, rank_from=100, rank_to=200, pool=pool)
        sampler.bind(1001)
        sampler.on_epoch_start(lambda: items)
        gen = torch.Generator().manual_seed(0)
        mined = []
        for _ in range(100):
            neg = sampler.sample(torch.full((4,), 1000), gen, user_vectors=user.expand(4, -1))
            assert neg.ids.shape == (4, 8) and not neg.shared
            mined.append(neg.ids[:, 0])
            if pool:
                assert neg.ids.unique().numel() <= pool
        ids = torch.cat(mined).float()
        if not pool:
            assert ids.min() >= 101 and ids.max() <= 200
        means[pool] = ids.mean().item()
    assert 130 <= means[100] <= 180, means
    with pytest.raises(InputError, match="pool must be 0"):
        HardNegativeSampler(pool=-1)


def test_uniform_shared_mode_and_bad_arguments() -> None:
    s = UniformSampler(n_neg=10, shared=True)
    s.bind(50)
    out = s.sample(torch.tensor([1, 2, 3]), torch.Generator())
    assert out.shared and out.ids.shape == (10,)
    with pytest.raises(InputError):
        UniformSampler(n_neg=0)
    with pytest.raises(InputError):
        HardNegativeSampler(n_neg=2, n_hard=3)


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(st.integers(0, 29), min_size=1, max_size=24),
    n_items=st.sampled_from([30, 5000]),  # bitmap path, and the sort fallback
    as_matrix=st.booleans(),
)
def test_distinct_ids_equals_torch_unique(ids, n_items, as_matrix) -> None:
    """The trainer's candidate de-duplication: sorted distinct ids and each id's slot."""
    from rechub_core.batch_loss import distinct_ids

    x = torch.tensor(ids)
    if as_matrix and len(ids) % 2 == 0:
        x = x.view(2, -1)  # per-row candidates (B, C)
    uniq, inverse = distinct_ids(x, n_items)
    ref_uniq, ref_inverse = torch.unique(x, return_inverse=True)
    assert torch.equal(uniq, ref_uniq)
    assert torch.equal(inverse, ref_inverse)
    assert torch.equal(uniq[inverse], x)


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 5), c=st.integers(1, 7), d=st.integers(1, 6))
def test_per_row_candidate_logits_are_dot_products_over_temperature(b, c, d) -> None:
    from rechub_core.features import SparseFeature
    from rechub_core.matching import DSSM

    model = DSSM([SparseFeature("user_id", 5, 4)], [SparseFeature("item_id", 5, 4)])
    user, items = torch.randn(b, d), torch.randn(b, c, d)
    expected = torch.einsum("bd,bcd->bc", user, items) / model.temperature
    got = model.logits(user, items)  # (B, C)
    assert got.shape == (b, c)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(
    scores=st.lists(st.floats(-4.0, 4.0), min_size=3, max_size=6),
    pos_index=st.integers(0, 5),
    n_neg=st.integers(1, 3),
)
def test_sampled_softmax_agrees_with_full_softmax_in_expectation(
    scores: list[float], pos_index: int, n_neg: int
) -> None:
    """On a tiny catalogue, averaging exp(sampled softmax loss) over every possible draw of
    ``n_neg`` shared uniform negatives (with replacement; accidental hits masked; logQ
    correction as the trainer's shared-negatives path applies it) gives exactly
    exp(full softmax loss): the sampled loss's partition function is unbiased."""
    import itertools

    from rechub_core.losses import shared_negative_logits

    n = len(scores)
    n_items = n + 1  # ids 1..n, 0 is padding
    pos = pos_index % n + 1
    s = torch.tensor([0.0, *scores], dtype=torch.float64)  # s[i]: the user's logit of item i
    full = F.cross_entropy(s[1:].view(1, -1), torch.tensor([pos - 1]))
    sampler = create("sampler", "uniform", n_neg=n_neg, shared=True)
    sampler.bind(n_items, torch.ones(n_items))
    loss_fn = SampledSoftmaxLoss(logq_correction=True)
    pos_ids = torch.tensor([pos])
    total = 0.0
    draws = list(itertools.product(range(1, n_items), repeat=n_neg))  # all equally likely
    for draw in draws:
        neg = torch.tensor(draw)
        logits, target, valid, log_q = shared_negative_logits(
            s[pos].view(1, 1), s[neg].view(1, -1), pos_ids, neg, sampler.log_q(neg).double()
        )
        total += math.exp(float(loss_fn(logits, target, valid, log_q)))
    # log_q comes from the sampler in float32: agreement to float32 precision
    assert total / len(draws) == pytest.approx(math.exp(float(full)), rel=1e-6)


def test_auto_sampler_rule_picks_full_or_sampled() -> None:
    from rechub_core.samplers import FULL_SOFTMAX_MAX_ITEMS

    small, large = create("sampler", "auto"), create("sampler", "auto", n_neg=64)
    small.bind(1683, torch.ones(1683))  # MovieLens-100K: 1,682 items
    large.bind(FULL_SOFTMAX_MAX_ITEMS + 2, torch.ones(FULL_SOFTMAX_MAX_ITEMS + 2))
    assert (small.choice, large.choice) == ("full", "sampled")
    g = torch.Generator().manual_seed(0)
    full = small.sample(torch.tensor([3, 5]), g)
    assert full.full_catalogue and torch.equal(full.ids, torch.arange(1, 1683))
    sampled = large.sample(torch.tensor([3, 5]), g)
    assert sampled.shared and not sampled.batch_positives and sampled.ids.shape == (64,)
    assert int(sampled.ids.min()) >= 1 and int(sampled.ids.max()) <= FULL_SOFTMAX_MAX_ITEMS + 1
    with pytest.raises(InputError, match="before bind"):
        create("sampler", "auto").sample(torch.tensor([1]), g)


@pytest.mark.parametrize("bound", [5_000, 25_000])
def test_auto_sampler_bound_is_inclusive(bound: int) -> None:
    """``max_full_items`` items (padding excluded) still train a full softmax; one more samples.
    5,000 is the default; the sequential family raises it to 25,000 (Sports' 18,357 and Yelp's
    20,033 items then train a full softmax, Toys' 11,924 items sample for the DSSM family)."""
    at, above = (create("sampler", "auto", max_full_items=bound) for _ in range(2))
    at.bind(bound + 1, torch.ones(bound + 1))  # + the padding id 0
    above.bind(bound + 2, torch.ones(bound + 2))
    assert (at.choice, above.choice) == ("full", "sampled")


def test_family_defaults_follow_the_documented_bounds() -> None:
    from rechub_core.plugins import get_spec
    from rechub_core.samplers import FULL_SOFTMAX_MAX_ITEMS

    assert FULL_SOFTMAX_MAX_ITEMS == 5_000
    for name in ("GRU4Rec", "NARM", "SASRec", "STAMP"):
        settings = get_spec("model", name).train_defaults
        assert (settings.sampler, settings.sampler_params) == ("auto", {"max_full_items": 25_000})
    for name in ("DSSM", "YoutubeDNN", "MIND", "SINE", "ComirecDR", "ComirecSA"):
        settings = get_spec("model", name).train_defaults
        assert (settings.sampler, settings.sampler_params) == ("auto", {}), name
