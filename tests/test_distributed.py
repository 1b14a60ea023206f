"""Data-parallel training (rechub_core.distributed): shards, the gathered in-batch gradient,
two gloo processes training like one process on the global batch, and ``--nproc``."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from rechub_core import distributed
from rechub_core.data import BatchLoader, loaders_from_prepared
from rechub_core.io import load_torch, write_json
from rechub_core.losses import SampledSoftmaxLoss
from rechub_core.samplers import InBatchSampler
from rechub_core.schema import DataSchema
from rechub_core.trainer import MatchTrainer, load_weights

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch build has no torch.distributed"
)


@pytest.mark.parametrize("n", [0, 1, 7, 10, 11])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_every_row_with_equal_sizes(n: int, world: int) -> None:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shards = [distributed.shard_order(order, r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1, "every rank runs the same number of steps"
    assert len(shards[0]) == -(-n // world)
    seen = torch.cat(shards)
    assert set(seen.tolist()) == set(order.tolist())
    assert len(seen) - n < world  # padding repeats fewer than one row per rank


def test_sharded_loader_gives_each_rank_its_part_of_the_same_permutation() -> None:
    loader = BatchLoader({"x": torch.arange(101)}, batch_size=10, shuffle=True, seed=4)
    loader.set_epoch(3)
    full = torch.cat([b["x"] for b in loader])
    parts = []
    for rank in range(2):
        view = loader.shard(rank, 2, batch_size=5)
        assert len(view) == 11 and loader.world_size == 1  # the original is untouched
        parts.append(torch.cat([b["x"] for b in view]))
    assert torch.equal(parts[0], full[0::2]) and torch.equal(parts[1][:50], full[1::2])
    assert int(parts[1][50]) == int(full[0])  # the padded row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ROWS, BATCH = 1024, 128  # rows divisible by the batch: no padded rows, so DDP == one process


def _case(path: Path, gather: bool = True) -> tuple[MatchTrainer, BatchLoader, BatchLoader]:
    """A small model without dropout, in-batch softmax with logQ, and the loaders; the same
    in the parent (one process) and in each rank."""
    from rechub_core.preprocess import prepare
    from rechub_core.synthetic import synthetic_interactions
    from rechub_core.towers import ItemEmbeddingTower, MLPTower, TwoTowerModel

    data = prepare(
        synthetic_interactions(n_users=300, n_items=120, n_clusters=6, seed=3), max_len=20
    )
    schema = DataSchema.from_prepared(data)
    torch.manual_seed(0)
    model = TwoTowerModel(
        MLPTower([schema.user_id(16), schema.history(16)], dims=[32, 16]),
        ItemEmbeddingTower(schema.item_id(16)),
        temperature=0.1,
    )
    train, val, _ = loaders_from_prepared(data, batch_size=BATCH, seed=1)
    train.tensors = {k: v[:ROWS] for k, v in train.tensors.items()}
    train.n_rows = ROWS
    trainer = MatchTrainer(
        model,
        mode=2,
        loss=SampledSoftmaxLoss(logq_correction=True),
        sampler=InBatchSampler(),
        optimizer_params={"lr": 5e-3},
        n_epoch=2,
        earlystop_patience=5,
        model_path=path,
        seed=7,
        verbose=False,
        gather_negatives=gather,
        logits_dtype="float32",  # one process vs two are compared to 1e-4: no bfloat16 rounding
    )
    return trainer, train, val


def _check_gather(ctx: distributed.DistContext, rank: int) -> None:
    sizes = [2, 3]  # ranks hold different numbers of rows
    full = torch.arange(15.0).view(5, 3)
    start = sum(sizes[:rank])
    x = full[start : start + sizes[rank]].clone().requires_grad_()
    gathered, offset = ctx.gather_rows(x)
    assert offset == start and torch.equal(gathered, full)
    weight = torch.linspace(-1, 1, 15).view(5, 3) * (rank + 1)  # each rank's own loss
    (gathered * weight).sum().backward()
    # d(loss_0 + loss_1) / dx: this rank's rows of weight * (1 + 2)
    expected = 3 * torch.linspace(-1, 1, 15).view(5, 3)[start : start + sizes[rank]]
    assert x.grad is not None and torch.allclose(x.grad, expected), x.grad
    assert ctx.all_sum([1.0, float(rank)]) == [2.0, 1.0]
    assert ctx.broadcast_object({"r": rank}) == {"r": 0}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    ctx, _ = distributed.setup("cpu")
    try:
        assert ctx.enabled and ctx.rank == rank and ctx.backend == "gloo"
        _check_gather(ctx, rank)
        trainer, train, val = _case(Path(out) / "ddp")
        history = trainer.fit(train, val)
        if rank == 0:
            write_json(Path(out) / "history.json", history)
    finally:
        distributed.shutdown()
    # done: skip the interpreter's teardown of torch, pandas and faiss (seconds on a busy
    # 2-core machine); a failure above still reaches the parent through spawn's error queue
    os._exit(0)


def test_two_processes_train_like_one_with_the_global_batch(tmp_path: Path) -> None:
    """Two gloo processes (torch.multiprocessing.spawn, the torchrun environment):

    - the all-gather of rows (different counts per rank) returns every row in rank order and
      backward gives each rank the sum over ranks of the losses' gradients for its rows;
    - DDP training with in-batch negatives gathered across ranks, each rank reading its
      half of every global batch, ends with the weights of one process training on the
      global batch (same rows, same candidates, averaged gradients);
    - the loss falls, and rank 0's checkpoint (no ``module.`` prefix) loads into a plain
      model through the normal load path.
    """
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == 2 and history[-1]["loss"] < history[0]["loss"]
    ckpt = load_torch(tmp_path / "ddp" / "checkpoint.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 1
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    assert not list((tmp_path / "ddp").glob(".*.tmp"))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference, train, val = _case(tmp_path / "one")
        one = reference.fit(train, val)
    finally:
        torch.set_num_threads(threads)
    assert [h["loss"] for h in one] == pytest.approx([h["loss"] for h in history], rel=1e-4)

    plain, _, _ = _case(tmp_path / "plain")  # a fresh, unwrapped model
    load_weights(plain.model, load_torch(tmp_path / "ddp" / "model.pt"), "model.pt")
    for (name, a), b in zip(
        plain.model.state_dict().items(), reference.model.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-4), (name, float((a - b).abs().max()))


def test_train_nproc_launches_torchrun_with_the_run_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rechub train --nproc 2`` checks the config, writes it to a temporary file beside the
    run folder (never into it: the ranks write through OUT.staging and commit) and hands
    torchrun ``train CONFIG --out OUT``; a failed launch is a clear error."""
    from typer.testing import CliRunner

    from rechub_core.cli import make_app
    from rechub_core.config import load_config

    calls: list[tuple[int, list[str], Any]] = []
    monkeypatch.setattr(
        distributed,
        "launch",
        lambda n, args: calls.append((n, args, load_config(args[1]))) or 0,
    )
    out = tmp_path / "run"
    args = ["train", "--model", "YoutubeSBC", "--epochs", "2", "--gather-negatives"]
    result = CliRunner().invoke(make_app(), [*args, "--nproc", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    [(n, launched, cfg)] = calls
    assert n == 2 and launched == ["train", launched[1], "--out", str(out)]
    assert Path(launched[1]).parent == tmp_path and not Path(launched[1]).exists()
    assert not out.exists(), "the launcher writes nothing into the run folder"
    assert cfg.model.name == "YoutubeSBC" and cfg.train.gather_negatives and cfg.train.epochs == 2
    monkeypatch.setattr(distributed, "launch", lambda n, args: 1)
    failed = CliRunner().invoke(make_app(), [*args, "--nproc", "2", "--out", str(out)])
    assert failed.exit_code == 1 and "--resume --nproc 2" in " ".join(failed.output.split())
