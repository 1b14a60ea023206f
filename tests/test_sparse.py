"""Row-wise lazy Adam (rechub_core.optim.RowwiseAdam): equal to Adam on the rows a batch
touches, untouched rows unchanged, state that checkpoints and resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rechub_core.data import loaders_from_prepared
from rechub_core.errors import InputError
from rechub_core.io import load_torch
from rechub_core.optim import RowwiseAdam, build_optimizer, rowwise_param_groups
from rechub_core.preprocess import PreparedData
from rechub_core.schema import DataSchema
from rechub_core.towers import ItemEmbeddingTower, MLPTower, TwoTowerModel
from rechub_core.trainer import MatchTrainer


def _pair(rows: int, dim: int, seed: int) -> tuple[nn.Embedding, nn.Embedding]:
    torch.manual_seed(seed)
    a = nn.Embedding(rows, dim)
    b = nn.Embedding(rows, dim)
    b.load_state_dict(a.state_dict())
    return a, b


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(2, 30),
    dim=st.integers(1, 8),
    batches=st.lists(st.lists(st.integers(0, 29), min_size=1, max_size=10), min_size=1, max_size=4),
    weight_decay=st.sampled_from([0.0, 0.01]),
    seed=st.integers(0, 1000),
)
def test_touched_rows_equal_adam_untouched_rows_unchanged(
    rows: int, dim: int, batches: list[list[int]], weight_decay: float, seed: int
) -> None:
    """One step from a fresh state: every touched row as dense Adam's, every other row as it
    was. Over several steps, rows touched in every step still equal dense Adam's; rows never
    touched never move (dense Adam moves rows with momentum, lazy Adam does not)."""
    batches = [[i % rows for i in b] for b in batches]
    lazy, dense = _pair(rows, dim, seed)
    opt_l = RowwiseAdam(
        [{"params": [lazy.weight], "rowwise": True}], lr=0.1, weight_decay=weight_decay
    )
    opt_d = torch.optim.Adam(dense.parameters(), lr=0.1, weight_decay=weight_decay)
    start = lazy.weight.detach().clone()
    for step, ids in enumerate(batches):
        idx = torch.tensor(ids)
        for emb, opt in ((lazy, opt_l), (dense, opt_d)):
            opt.zero_grad()
            (emb(idx) ** 2).sum().backward()
            opt.step()
        touched = sorted(set(ids))
        if step == 0:
            assert torch.allclose(lazy.weight[touched], dense.weight[touched], atol=1e-6)
    always = sorted(set.intersection(*(set(b) for b in batches)))
    if always:
        assert torch.allclose(lazy.weight[always], dense.weight[always], atol=1e-5)
    never = sorted(set(range(rows)) - set().union(*(set(b) for b in batches)))
    assert torch.equal(lazy.weight[never], start[never])
    assert torch.equal(opt_l.state[lazy.weight]["exp_avg"][never], torch.zeros(len(never), dim))


def test_dense_groups_are_plain_adam() -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    opt_a = RowwiseAdam(a.parameters(), lr=0.05, weight_decay=0.1)
    opt_b = torch.optim.Adam(b.parameters(), lr=0.05, weight_decay=0.1)
    x = torch.randn(8, 4)
    for _ in range(5):
        for m, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_trainer_adam_is_multi_tensor_and_bit_identical_to_the_loop(
    synthetic: PreparedData, tmp_path: Path
) -> None:
    """The trainer's plain Adam runs the multi-tensor step (``foreach``), and its weights after
    several steps equal, bit for bit, those of torch's per-parameter loop (the CPU default)."""
    trainer = MatchTrainer(_model(synthetic, 0), model_path=tmp_path, verbose=False)
    assert trainer.optimizer.param_groups[0]["foreach"] is True
    loop, multi = _model(synthetic, 3), _model(synthetic, 3)
    opt_loop = torch.optim.Adam(loop.parameters(), lr=0.05, weight_decay=0.01, foreach=False)
    opt_multi = build_optimizer(multi, torch.optim.Adam, {"lr": 0.05, "weight_decay": 0.01}, None)
    assert opt_multi.param_groups[0]["foreach"] is True
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        grads = [torch.randn(p.shape, generator=gen) for p in loop.parameters()]
        for model, opt in ((loop, opt_loop), (multi, opt_multi)):
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for p, q in zip(loop.parameters(), multi.parameters(), strict=True):
        assert torch.equal(p, q)
    # a caller's own choice is kept
    kept = build_optimizer(
        _model(synthetic, 0), torch.optim.Adam, {"lr": 0.1, "foreach": False}, None
    )
    assert kept.param_groups[0]["foreach"] is False
    # a differentiable Adam (whose step autograd can see) keeps torch's per-parameter loop
    diff = build_optimizer(_model(synthetic, 0), torch.optim.Adam, {"differentiable": True}, None)
    assert not diff.param_groups[0]["foreach"]


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="lr > 0"):
        RowwiseAdam([nn.Parameter(torch.zeros(2, 2))], lr=0)
    with pytest.raises(InputError, match="2-D"):
        RowwiseAdam([{"params": [nn.Parameter(torch.zeros(3))], "rowwise": True}])


def _model(data: PreparedData, seed: int) -> TwoTowerModel:
    torch.manual_seed(seed)
    schema = DataSchema.from_prepared(data)
    user = MLPTower([schema.user_id(8), schema.history(8)], dims=[16, 8], dropout=0.1)
    return TwoTowerModel(user, ItemEmbeddingTower(schema.item_id(8)), temperature=0.1)


def _trainer(model: TwoTowerModel, path: Path, n_epoch: int) -> MatchTrainer:
    return MatchTrainer(
        model,
        sampler="uniform",
        optimizer_params={"lr": 5e-3},
        n_epoch=n_epoch,
        earlystop_patience=10,
        model_path=path,
        seed=7,
        verbose=False,
        sparse_embeddings=True,
    )


def test_rule_and_trainer_use_rowwise_adam(synthetic: PreparedData, tmp_path: Path) -> None:
    model = _model(synthetic, 0)
    assert rowwise_param_groups(model) is None  # 120 items, 300 users: below the rule
    groups = rowwise_param_groups(model, min_rows=2)
    assert groups is not None and len(groups[0]["params"]) == 2  # user and item tables
    trainer = _trainer(model, tmp_path, 1)
    assert isinstance(trainer.optimizer, RowwiseAdam)
    dense = MatchTrainer(_model(synthetic, 0), model_path=tmp_path / "d", verbose=False)
    assert type(dense.optimizer) is torch.optim.Adam


def test_resume_after_a_kill_equals_unbroken_run(
    synthetic: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill a sparse-optimizer run in the middle of its third epoch; resuming from the
    checkpoint of epoch 2 (weights, row-wise moments and steps, RNG) gives the unbroken run's
    weights."""
    train, val, _ = loaders_from_prepared(synthetic, batch_size=256, seed=2)
    unbroken = _model(synthetic, 5)
    _trainer(unbroken, tmp_path / "unbroken", 3).fit(train, val)

    killed = _model(synthetic, 5)
    trainer = _trainer(killed, tmp_path / "broken", 3)
    real_step = trainer._step
    calls = {"n": 0}
    steps_per_epoch = len(train)

    def dying_step(*args: object) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 2 * steps_per_epoch + 1:  # one step into the third epoch
            raise KeyboardInterrupt("killed")
        return real_step(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(trainer, "_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(train, val)
    ckpt = load_torch(tmp_path / "broken" / "checkpoint.pt")
    assert ckpt["epoch"] == 1
    state = ckpt["optimizer"]["state"]
    assert state and all("exp_avg" in s for s in state.values())

    resumed = _model(synthetic, 99)  # another init: the weights must come from the checkpoint
    _trainer(resumed, tmp_path / "broken", 3).fit(train, val, resume=True)
    for (name, a), b in zip(
        unbroken.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name


def test_sparse_gradients_give_the_dense_path_weights(synthetic: PreparedData) -> None:
    """Tables switched to sparse gradients (pooled history and id lookups) train to the same
    weights as the same tables with dense gradients, under RowwiseAdam."""
    from rechub_core.optim import use_sparse_gradients

    train, _, _ = loaders_from_prepared(synthetic, batch_size=64, seed=1)
    weights = []
    for sparse in (False, True):
        model = _model(synthetic, 3)
        model.eval()  # no dropout: the two runs see identical forward passes
        if sparse:
            assert use_sparse_gradients(model, min_rows=2) == 2
        opt = RowwiseAdam(rowwise_param_groups(model, min_rows=2), lr=0.01)
        for i, batch in enumerate(train):
            if i == 4:
                break
            user = model.encode_user(batch)
            item = model.encode_item(train.item_batch(batch["item_id"]))
            loss = -(user * item).sum(dim=1).mean() + (user**2).mean()
            opt.zero_grad()
            loss.backward()
            grads = [p.grad for g in opt.param_groups if g["rowwise"] for p in g["params"]]
            assert all(gr is not None and gr.is_sparse == sparse for gr in grads)
            opt.step()
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    for name, value in weights[0].items():
        assert torch.allclose(value, weights[1][name], atol=1e-6), name


def _ddp_case(path: Path) -> tuple[MatchTrainer, object, object]:
    """In-batch softmax on 1,024 rows (divisible by the global batch), row-wise Adam on every
    table; the same in one process and in each rank."""
    from rechub_core.preprocess import prepare
    from rechub_core.synthetic import synthetic_interactions

    data = prepare(synthetic_interactions(n_users=300, n_items=120, seed=3), max_len=20)
    torch.manual_seed(0)
    schema = DataSchema.from_prepared(data)
    model = TwoTowerModel(
        MLPTower([schema.user_id(16), schema.history(16)], dims=[32, 16]),
        ItemEmbeddingTower(schema.item_id(16)),
        temperature=0.1,
    )
    train, val, _ = loaders_from_prepared(data, batch_size=128, seed=1)
    train.tensors = {k: v[:1024] for k, v in train.tensors.items()}
    train.n_rows = 1024
    trainer = MatchTrainer(
        model,
        loss="sampled_softmax",
        sampler="in_batch",
        optimizer_params={"lr": 5e-3},
        n_epoch=2,
        model_path=path,
        seed=7,
        verbose=False,
        sparse_embeddings=True,
        gather_negatives=True,
    )
    return trainer, train, val


def _ddp_worker(rank: int, port: int, out: str) -> None:
    import json
    import os

    from rechub_core import distributed

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    distributed.setup("cpu")
    try:
        trainer, train, val = _ddp_case(Path(out) / "ddp")
        tables = [m for m in trainer.model.modules() if isinstance(m, nn.Embedding)]
        assert isinstance(trainer.optimizer, RowwiseAdam) and all(t.sparse for t in tables)
        history = trainer.fit(train, val)  # type: ignore[arg-type]
        if rank == 0:
            Path(out, "history.json").write_text(json.dumps(history))
    finally:
        distributed.shutdown()
    os._exit(0)


def test_ddp_sparse_gradients_train_like_one_process(tmp_path: Path) -> None:
    """Under DDP (2 gloo processes) the tables keep sparse gradients (gloo all-reduces them)
    and RowwiseAdam updates the rows the global batch touched: the epoch losses equal one
    process's on the global batch."""
    import json
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    history = json.loads((tmp_path / "history.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one, train, val = _ddp_case(tmp_path / "one")
        assert any(m.sparse for m in one.model.modules() if isinstance(m, nn.Embedding))
        reference = one.fit(train, val)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(threads)
    assert [h["loss"] for h in reference] == pytest.approx([h["loss"] for h in history], rel=1e-4)
