"""Feature declarations and building blocks: validation, padding-aware pooling, input checks,
mask helpers, the causal Transformer block and the history contract (rechub_core.history), as
hypothesis properties where the claim is "for every input"."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rechub_core.errors import InputError
from rechub_core.features import DenseFeature, SequenceFeature, SparseFeature
from rechub_core.history import HistoryEncoder, compact, find_history, last_position, restore_layout
from rechub_core.layers import (
    MASK_VALUE,
    MLP,
    CausalSelfAttentionBlock,
    EmbeddingLayer,
    PackedPositions,
    causal_mask,
    gather_last,
    l2_normalize,
    masked_mean,
    masked_softmax,
    mlp_params,
    padding_mask,
    pooled_embedding,
)


def assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Like torch.testing.assert_close, without its first-call import cost (seconds)."""
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6), (got, expected)


FAST = settings(max_examples=30, deadline=None)

names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8)
blank = st.sampled_from(["", " ", "\t", "  \n"])

# --- feature declarations ------------------------------------------------------------------------


@FAST
@given(name=blank)
def test_features_reject_an_empty_name(name):
    for build in (
        lambda: SparseFeature(name, 10, 4),
        lambda: DenseFeature(name),
        lambda: SequenceFeature(name, 10, 4),
    ):
        with pytest.raises(ValueError, match=r"\.name must be a non-empty string"):
            build()


@FAST
@given(name=names, vocab_size=st.integers(max_value=1))
def test_features_reject_vocab_size_below_two(name, vocab_size):
    for cls in (SparseFeature, SequenceFeature):
        with pytest.raises(ValueError) as err:
            cls(name, vocab_size, 4)
        message = str(err.value)
        assert f"{cls.__name__}({name!r}).vocab_size must be an integer >= 2" in message
        assert f"got {vocab_size}" in message
        assert "padding id 0" in message


@FAST
@given(name=names, embed_dim=st.integers(max_value=0))
def test_features_reject_embed_dim_below_one(name, embed_dim):
    for build in (
        lambda: SparseFeature(name, 10, embed_dim),
        lambda: DenseFeature(name, embed_dim),
        lambda: SequenceFeature(name, 10, embed_dim),
    ):
        with pytest.raises(ValueError, match=rf"\({name!r}\)\.embed_dim must be an integer >= 1"):
            build()


@pytest.mark.parametrize("value", [2.0, "8", True, None])
def test_features_reject_non_integer_sizes(value):
    with pytest.raises(ValueError, match="vocab_size must be an integer"):
        SparseFeature("item", value, 4)
    with pytest.raises(ValueError, match="embed_dim must be an integer"):
        SequenceFeature("hist", 10, value)


@FAST
@given(name=names, pooling=st.text(max_size=6).filter(lambda p: p not in ("mean", "sum", "concat")))
def test_sequence_feature_rejects_bad_pooling(name, pooling):
    with pytest.raises(ValueError) as err:
        SequenceFeature(name, 10, 4, pooling=pooling)
    message = str(err.value)
    assert f"SequenceFeature({name!r}).pooling must be one of" in message
    assert repr(pooling) in message


@FAST
@given(name=names)
def test_features_reject_sharing_with_themselves(name):
    with pytest.raises(ValueError, match=r"\.shared_with must name another feature"):
        SparseFeature(name, 10, 4, shared_with=name)
    with pytest.raises(ValueError, match=r"\.shared_with must name another feature"):
        SequenceFeature(name, 10, 4, shared_with=name)


def test_valid_features_are_frozen_with_defaults():
    seq = SequenceFeature("hist", 100, 8, shared_with="item")
    assert (seq.pooling, seq.shared_with) == ("mean", "item")
    assert DenseFeature("age").embed_dim == 1
    assert SequenceFeature("hist", 100, 8, pooling=None).pooling is None
    with pytest.raises(AttributeError):
        seq.embed_dim = 4  # type: ignore[misc]


# --- embedding layer ----------------------------------------------------------------------------

VOCAB, DIM = 12, 3


def seq_layer(pooling: str) -> EmbeddingLayer:
    torch.manual_seed(0)
    return EmbeddingLayer([SequenceFeature("hist", VOCAB, DIM, pooling=pooling)])


MEAN, SUM = seq_layer("mean"), seq_layer("sum")
real_ids = st.lists(st.integers(1, VOCAB - 1), min_size=1, max_size=6)


@FAST
@given(
    ids=real_ids,
    before=st.integers(0, 4),
    after=st.integers(0, 4),
    pooling=st.sampled_from(["mean", "sum"]),
)
def test_pooling_ignores_padding(ids, before, after, pooling):
    layer = MEAN if pooling == "mean" else SUM
    bare = torch.tensor([ids])  # (1, n)
    padded = torch.tensor([[0] * before + ids + [0] * after])  # (1, before + n + after)
    with torch.no_grad():
        expected = layer({"hist": bare}, ["hist"])  # (1, D)
        got = layer({"hist": padded}, ["hist"])  # (1, D)
        table = layer.table("hist").weight
    assert got.shape == (1, DIM)
    assert_close(got, expected)
    rows = table[torch.tensor(ids)]  # (n, D)
    reference = rows.mean(0) if pooling == "mean" else rows.sum(0)  # (D,)
    assert_close(got[0], reference)


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_all_padding_row_pools_to_zeros(pooling):
    layer = MEAN if pooling == "mean" else SUM
    with torch.no_grad():
        out = layer({"hist": torch.zeros(2, 5, dtype=torch.long)}, ["hist"])  # (2, D)
    assert torch.equal(out, torch.zeros(2, DIM))


def test_concat_and_sequence_zero_padding_positions():
    layer = EmbeddingLayer(
        [
            SequenceFeature("hist", VOCAB, DIM, pooling="concat"),
            SequenceFeature("raw", VOCAB, DIM, pooling=None, shared_with="hist"),
        ]
    )
    x = {"hist": torch.tensor([[0, 3, 4]]), "raw": torch.tensor([[5, 0, 0]])}
    with torch.no_grad():
        flat = layer(x, ["hist", "raw"])  # (1, L*D); "raw" is skipped by forward
        emb, mask = layer.sequence(x, "raw")  # (1, L, D), (1, L)
    assert flat.shape == (1, 3 * DIM)
    assert torch.equal(flat[0, :DIM], torch.zeros(DIM))
    assert torch.equal(mask, torch.tensor([[True, False, False]]))
    assert torch.equal(emb[0, 1:], torch.zeros(2, DIM))
    with pytest.raises(InputError, match="pooling=None; read it with sequence"):
        layer.embed(x, "raw")


@FAST
@given(
    bad=st.one_of(st.integers(-1000, -1), st.integers(VOCAB, VOCAB + 1000)),
    where=st.integers(0, 3),
    sparse=st.booleans(),
)
def test_ids_outside_the_vocabulary_are_rejected(bad, where, sparse):
    layer = EmbeddingLayer([SparseFeature("item", VOCAB, DIM), SequenceFeature("hist", VOCAB, DIM)])
    ids = [1, 2, VOCAB - 1, 0]
    ids[where] = bad
    x = {"item": torch.tensor([1, 2, 3, 4]), "hist": torch.tensor([[1, 2, 3, 4]])}
    name = "item" if sparse else "hist"
    x[name] = torch.tensor(ids if sparse else [ids])
    with pytest.raises(InputError) as err:
        layer(x, ["item", "hist"])
    message = str(err.value)
    assert f"feature {name!r} has id {bad} outside [0, {VOCAB})" in message


def test_float_ids_are_rejected():
    layer = EmbeddingLayer([SparseFeature("item", VOCAB, DIM)])
    with pytest.raises(InputError, match="'item' must hold integer ids"):
        layer({"item": torch.tensor([1.0, 2.0])}, ["item"])


@FAST
@given(row=st.integers(0, 3), col=st.integers(0, 1))
def test_nan_in_a_dense_feature_is_rejected(row, col):
    layer = EmbeddingLayer([DenseFeature("price", 2)])
    values = torch.rand(4, 2)  # (B, 2)
    assert layer({"price": values}, ["price"]).shape == (4, 2)
    values[row, col] = float("nan")
    with pytest.raises(InputError, match="dense feature 'price' contains NaN"):
        layer({"price": values}, ["price"])


def test_dense_feature_width_is_checked():
    layer = EmbeddingLayer([DenseFeature("price", 2)])
    with pytest.raises(InputError, match="'price' has 3 values per row, declared embed_dim=2"):
        layer({"price": torch.rand(4, 3)}, ["price"])


def test_missing_feature_lists_the_batch_keys():
    layer = EmbeddingLayer([SparseFeature("item", VOCAB, DIM), DenseFeature("age")])
    batch = {"user": torch.tensor([1]), "age": torch.tensor([0.5])}
    with pytest.raises(InputError) as err:
        layer(batch, ["age", "item"])
    message = str(err.value)
    assert "feature 'item' is missing from the input batch" in message
    assert "(it has: age, user)" in message
    with pytest.raises(InputError, match="unknown feature 'zip'; the model declares: item, age"):
        layer(batch, ["zip"])


def test_shared_tables_are_one_parameter():
    layer = EmbeddingLayer(
        [
            SparseFeature("item", VOCAB, DIM),
            SequenceFeature("hist", VOCAB, DIM, shared_with="item"),
            SequenceFeature("clicks", VOCAB - 2, DIM, shared_with="hist"),  # chain to the root
        ]
    )
    assert list(layer.tables) == ["item"]
    assert layer.table("hist").weight is layer.table("item").weight
    assert layer.table("clicks").weight is layer.table("item").weight
    assert sum(p.numel() for p in layer.parameters()) == VOCAB * DIM
    assert torch.equal(layer.table("item").weight[0], torch.zeros(DIM))  # padding row
    x = {"item": torch.tensor([5]), "hist": torch.tensor([[5, 0]])}
    with torch.no_grad():
        out = layer(x, ["item", "hist"])  # (1, 2D)
    assert_close(out[:, :DIM], out[:, DIM:])


@FAST
@given(dim_a=st.integers(1, 8), dim_b=st.integers(1, 8))
def test_shared_tables_need_equal_dims(dim_a, dim_b):
    features = [
        SparseFeature("item", VOCAB, dim_a),
        SequenceFeature("hist", VOCAB, dim_b, shared_with="item"),
    ]
    if dim_a == dim_b:
        assert EmbeddingLayer(features).output_dim(["item", "hist"]) == 2 * dim_a
        return
    with pytest.raises(InputError) as err:
        EmbeddingLayer(features)
    message = str(err.value)
    assert f"'hist' (embed_dim={dim_b}) shares the table of 'item' (embed_dim={dim_a})" in message


def test_sharing_errors():
    with pytest.raises(InputError, match="shared_with 'nope', which is not among"):
        EmbeddingLayer([SequenceFeature("hist", VOCAB, DIM, shared_with="nope")])
    with pytest.raises(InputError, match="share tables in a cycle"):
        EmbeddingLayer(
            [
                SparseFeature("a", VOCAB, DIM, shared_with="b"),
                SparseFeature("b", VOCAB, DIM, shared_with="a"),
            ]
        )
    with pytest.raises(InputError, match=r"'hist' \(vocab_size=20\).*which is smaller"):
        EmbeddingLayer(
            [
                SparseFeature("item", VOCAB, DIM),
                SequenceFeature("hist", 20, DIM, shared_with="item"),
            ]
        )


# --- mask helpers -------------------------------------------------------------------------------


@FAST
@given(
    lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5),
    left=st.booleans(),
)
def test_gather_last_picks_the_last_real_position(lengths, left):
    L, D = 6, 2
    ids = torch.zeros(len(lengths), L, dtype=torch.long)  # (B, L)
    for row, n in enumerate(lengths):
        if n:
            if left:
                ids[row, L - n :] = torch.arange(1, n + 1)
            else:
                ids[row, :n] = torch.arange(1, n + 1)
    positions = torch.arange(L, dtype=torch.float32)  # (L,)
    states = positions.view(1, L, 1).expand(len(lengths), L, D)  # (B, L, D): value = position
    last = gather_last(states, padding_mask(ids))  # (B, D)
    assert last.shape == (len(lengths), D)
    for row, n in enumerate(lengths):
        expected = 0 if n == 0 else (L - 1 if left else n - 1)
        assert last[row].tolist() == [expected] * D


@FAST
@given(mask=st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=4))
def test_gather_last_for_any_mask(mask):
    m = torch.tensor(mask)  # (B, 5)
    states = torch.randn(m.shape[0], 5, 3)  # (B, L, D)
    got = gather_last(states, m)  # (B, D)
    for row, flags in enumerate(mask):
        last = max((i for i, f in enumerate(flags) if f), default=0)
        assert torch.equal(got[row], states[row, last])


@FAST
@given(length=st.integers(1, 16))
def test_causal_mask_is_lower_triangular(length):
    mask = causal_mask(length)
    assert mask.dtype == torch.bool
    assert mask.shape == (length, length)
    for i in range(length):
        for j in range(length):
            assert bool(mask[i, j]) == (j <= i)


@FAST
@given(mask=st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=4))
def test_masked_mean(mask):
    m = torch.tensor(mask)  # (B, L)
    values = torch.randn(m.shape[0], 4, 3)  # (B, L, D)
    out = masked_mean(values, m)  # (B, D)
    assert not torch.isnan(out).any()
    for row, flags in enumerate(mask):
        if any(flags):
            assert_close(out[row], values[row][m[row]].mean(0))
        else:
            assert torch.equal(out[row], torch.zeros(3))


@FAST
@given(
    rows=st.lists(
        st.lists(st.integers(0, VOCAB - 1), min_size=5, max_size=5), min_size=1, max_size=6
    ),
    mean=st.booleans(),
    dirty_padding_row=st.booleans(),
)
def test_pooled_embedding_matches_gather_mask_reduce(rows, mean, dirty_padding_row):
    """The fast training path equals the exported path (gather, mask, reduce) in value and in
    gradient, including all-padding rows and a padding row 0 that is not zero."""
    seq = torch.tensor(rows)  # (B, L); 0 = padding anywhere in the row
    weight = torch.randn(VOCAB, DIM)
    if not dirty_padding_row:
        weight[0] = 0.0
    fast_w = weight.clone().requires_grad_(True)
    slow_w = weight.clone().requires_grad_(True)
    fast = pooled_embedding(fast_w, seq, mean=mean)  # (B, D)
    mask = padding_mask(seq)
    emb = nn.functional.embedding(seq, slow_w, padding_idx=0) * mask.unsqueeze(-1)
    slow = masked_mean(emb, mask) if mean else emb.sum(dim=1)  # (B, D)
    assert fast.shape == (seq.shape[0], DIM)
    assert_close(fast, slow)
    upstream = torch.randn_like(slow)
    fast.backward(upstream)
    slow.backward(upstream)
    assert fast_w.grad is not None and slow_w.grad is not None
    assert_close(fast_w.grad, slow_w.grad)
    assert torch.equal(fast_w.grad[0], torch.zeros(DIM))  # padding gets no gradient


def test_exported_and_eager_pooling_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Traced/exported graphs (input checks off) take the gather-mask-reduce path; it gives
    the same vectors as the eager path."""
    import rechub_core.layers as layers

    seq = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 0, 0, 0], [0, 0, 0, 0, 0]])
    for layer in (MEAN, SUM):
        with torch.no_grad():
            eager = layer({"hist": seq}, ["hist"])  # (3, D)
            monkeypatch.setattr(layers, "input_checks_enabled", lambda: False)
            exported_path = layer({"hist": seq}, ["hist"])
            monkeypatch.undo()
        assert_close(exported_path, eager)


def test_l2_normalize():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert_close(l2_normalize(x), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


# --- MLP ----------------------------------------------------------------------------------------


@FAST
@given(
    batch=st.integers(1, 5),
    input_dim=st.integers(1, 8),
    dims=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    activation=st.sampled_from(["relu", "prelu", "gelu", "tanh", "Sigmoid"]),
)
def test_mlp_output_shape(batch, input_dim, dims, activation):
    mlp = MLP(input_dim, dims, activation=activation)
    assert mlp(torch.randn(batch, input_dim)).shape == (batch, dims[-1])
    assert mlp.output_dim == dims[-1]
    linears = [m for m in mlp.net if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == dims
    assert isinstance(mlp.net[-1], nn.Linear)  # the last layer is linear by default


def test_mlp_last_activation_and_dropout():
    mlp = MLP(4, [8, 2], dropout=0.5, activation="relu", last_activation=True)
    kinds = [type(m).__name__ for m in mlp.net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout"]
    assert (mlp.eval()(torch.randn(16, 4)) >= 0).all()


def test_mlp_rejects_bad_arguments():
    with pytest.raises(InputError) as err:
        MLP(4, [8, 2], activation="swishy")
    assert "unknown activation 'swishy'" in str(err.value)
    assert "gelu" in str(err.value) and "relu" in str(err.value)
    with pytest.raises(InputError, match="at least one layer width"):
        MLP(4, [])
    with pytest.raises(InputError, match=r"dropout must be in \[0, 1\), got 1.0"):
        MLP(4, [8], dropout=1.0)


def test_mlp_rejects_unknown_activation_even_with_one_layer():
    with pytest.raises(InputError, match="unknown activation 'swishy'"):
        MLP(4, [8], activation="swishy")


def test_mlp_params_merges_defaults_and_names_unknown_keys():
    merged = mlp_params({"dims": [8]}, {"dims": [4], "dropout": 0.1}, "X user_params")
    assert merged == {"dims": [8], "dropout": 0.1}
    with pytest.raises(InputError, match=r"X user_params has unknown keys \['dim'\]"):
        mlp_params({"dim": [8]}, {}, "X user_params")


# --- the causal Transformer block ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("init", "layer"), [("default", "transformer"), ("xavier", "transformer"), ("default", "ligr")]
)
def test_attention_block_is_causal_and_ignores_padding(init: str, layer: str) -> None:
    torch.manual_seed(0)
    block = CausalSelfAttentionBlock(8, 2, 16, dropout=0.0, init=init, layer=layer).eval()
    x = torch.randn(2, 5, 8)  # (B, L, D)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    allowed = causal_mask(5).unsqueeze(0) & mask.unsqueeze(1)  # (B, L, L)
    out = block(x, allowed)
    changed = x.clone()
    changed[:, 3:] = torch.randn(2, 2, 8)  # later positions, and row 1's padding
    out2 = block(changed, allowed)
    assert_close(out2[:, :3], out[:, :3])
    assert torch.isfinite(block(x, torch.zeros(2, 5, 5, dtype=torch.bool))).all()  # no NaN


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=5),
    seed=st.integers(0, 99),
    layer=st.sampled_from(["transformer", "ligr"]),
)
def test_packed_positions_give_the_padded_results_at_real_positions(
    lengths: list[int], seed: int, layer: str
) -> None:
    torch.manual_seed(seed)
    b, length = len(lengths), max(lengths)
    mask = torch.arange(length).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, L)
    packed = PackedPositions.from_mask(mask)
    x = torch.randn(b, length, 8)
    assert packed.pack(x).shape == (sum(lengths), 8)
    unpacked = packed.unpack(packed.pack(x))
    assert torch.equal(unpacked[mask], x[mask]) and not unpacked[~mask].any()
    allowed = causal_mask(length).unsqueeze(0) & mask.unsqueeze(1)  # (B, L, L)
    assert torch.equal(packed.causal_keys(mask), allowed[mask])  # per real query, its keys
    assert torch.equal(packed.rows, mask.nonzero()[:, 0])
    block = CausalSelfAttentionBlock(8, 2, 16, dropout=0.0, layer=layer).eval()
    padded = block(block(x, allowed), allowed)  # (B, L, D)
    h = block(block(packed.pack(x), allowed, packed), allowed, packed)  # (n, D)
    assert_close(packed.unpack(h)[mask], padded[mask])
    # gradients reach the real inputs only
    x.requires_grad_(True)
    block(packed.pack(x), allowed, packed).sum().backward()
    assert x.grad is not None and not x.grad[~mask].any() and x.grad[mask].abs().sum() > 0


def test_attention_block_inits_and_arguments():
    torch.manual_seed(0)
    default = CausalSelfAttentionBlock(8, 2, 16, 0.1)
    torch.manual_seed(0)
    xavier = CausalSelfAttentionBlock(8, 2, 16, 0.1, ffn_dropout=False, init="xavier")
    assert list(default.state_dict()) == list(xavier.state_dict())  # one layout, two inits
    assert not torch.equal(default.qkv.weight, xavier.qkv.weight)
    assert torch.count_nonzero(xavier.qkv.bias) == 0
    assert default.ffn[2].p == 0.1 and xavier.ffn[2].p == 0.0
    with pytest.raises(InputError, match="SASRec: num_heads=3 must divide embed_dim=8"):
        CausalSelfAttentionBlock(8, 3, 16, 0.1, where="SASRec")
    with pytest.raises(InputError, match="init must be"):
        CausalSelfAttentionBlock(8, 2, 16, 0.1, init="kaiming")
    with pytest.raises(InputError, match="SASRec: layer must be 'transformer' or 'ligr'"):
        CausalSelfAttentionBlock(8, 2, 16, 0.1, layer="gated", where="SASRec")


def test_ligr_block_gates_each_branch_by_the_residual_stream() -> None:
    """The LiGR block is the transformer block with each residual branch scaled by
    sigmoid(Linear(x)) and a bias-free SwiGLU feed-forward: rebuilt here by hand."""
    torch.manual_seed(0)
    block = CausalSelfAttentionBlock(8, 2, 12, dropout=0.0, layer="ligr").eval()
    x = torch.randn(3, 4, 8)  # (B, L, D)
    allowed = causal_mask(4).unsqueeze(0).expand(3, 4, 4)
    gate_w, gate_b = block.gates.weight.split(8), block.gates.bias.split(8)
    h = x + torch.sigmoid(x @ gate_w[0].T + gate_b[0]) * block.attention(block.ln1(x), allowed)
    w_gate, w_up = block.ffn.gate_up.weight.split(12)
    z = block.ln2(h)
    ffn = (torch.nn.functional.silu(z @ w_gate.T) * (z @ w_up.T)) @ block.ffn.down.weight.T
    expected = h + torch.sigmoid(h @ gate_w[1].T + gate_b[1]) * ffn
    assert_close(block(x, allowed), expected)
    assert block.ffn.gate_up.bias is None and block.ffn.down.bias is None
    plain = CausalSelfAttentionBlock(8, 2, 12, dropout=0.0)
    assert plain.gates is None and "gates.weight" not in plain.state_dict()


def test_masked_softmax_uses_the_one_mask_value():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    out = masked_softmax(logits, torch.tensor([[True, False, True]]), dim=-1)
    assert out[0, 1] == 0 and torch.isclose(out.sum(), torch.tensor(1.0))
    nothing = masked_softmax(logits, torch.zeros(1, 3, dtype=torch.bool), dim=-1)
    assert_close(nothing, torch.full((1, 3), 1 / 3))  # uniform, not NaN
    assert MASK_VALUE == -1e9


# --- the history contract (rechub_core.history) --------------------------------------------------


def compact_by_loop(seq: torch.Tensor, max_len: int | None) -> torch.Tensor:
    """The contract written plainly: each row's real ids in order, the newest max_len kept,
    then zeros; width min(L, max_len)."""
    width = seq.shape[1] if max_len is None else min(seq.shape[1], max_len)
    out = torch.zeros(seq.shape[0], width, dtype=seq.dtype)
    for b, row in enumerate(seq.tolist()):
        real = [v for v in row if v != 0]
        kept = real if max_len is None else real[len(real) - min(len(real), max_len) :]
        out[b, : len(kept)] = torch.tensor(kept, dtype=seq.dtype)
    return out


histories = st.lists(
    st.lists(st.integers(0, 5), min_size=1, max_size=9), min_size=1, max_size=4
).map(lambda rows: [r + [0] * (9 - len(r)) for r in rows])


@FAST
@given(rows=histories, max_len=st.one_of(st.none(), st.integers(1, 12)))
def test_compact_keeps_the_newest_real_ids_in_order(rows, max_len):
    seq = torch.tensor(rows)
    ids, dest = compact(seq, max_len)
    assert torch.equal(ids, compact_by_loop(seq, max_len))
    # dest sends each kept id to its column, so restore_layout brings per-position values back
    back = restore_layout(ids.unsqueeze(-1).float(), dest).squeeze(-1)  # (B, L)
    kept = (seq != 0) & (back == seq.float())
    assert torch.equal(back[kept], seq[kept].float())
    assert torch.equal(last_position(ids != 0), ((ids != 0).sum(dim=1) - 1).clamp(min=0))


def test_find_history_names_the_problem():
    hist = SequenceFeature("hist", 10, 4, pooling=None)
    pooled = SequenceFeature("tags", 10, 4, pooling="mean")
    assert find_history([pooled, hist], "M") is hist
    with pytest.raises(InputError, match="M needs exactly one SequenceFeature with pooling=None"):
        find_history([pooled], "M")
    with pytest.raises(InputError, match="found hist, hist2"):
        find_history([hist, SequenceFeature("hist2", 10, 4, pooling=None)], "M")


def test_history_encoder_reads_any_layout_as_the_newest_items():
    hist = SequenceFeature("hist", 10, 4, pooling=None)
    encoder = HistoryEncoder([hist], max_len=2)
    assert encoder.output_dim == 4 and encoder.history_name == "hist"
    embedding = EmbeddingLayer([hist])
    left = {"hist": torch.tensor([[0, 0, 3, 4, 5]])}
    right = {"hist": torch.tensor([[3, 4, 5, 0, 0]])}
    (emb_l, mask_l, _), (emb_r, mask_r, _) = (
        encoder.read_history(left, embedding),
        encoder.read_history(right, embedding),
    )
    assert_close(emb_l, emb_r)
    assert torch.equal(mask_l, torch.tensor([[True, True]])) and torch.equal(mask_l, mask_r)
    assert_close(emb_l[0], embedding.table("hist").weight[[4, 5]])  # the newest two
    with pytest.raises(InputError, match="embed_dim must be an int >= 1"):
        HistoryEncoder([hist], embed_dim=0)
