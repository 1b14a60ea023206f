"""Data-parallel training with ``torch.distributed`` (DDP): everything distributed, in one place.

rechub does not bring its own distribution layer. ``torchrun`` starts one process per rank
and describes the job in environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); :func:`setup` joins that process group (gloo on CPU, NCCL on
CUDA) and returns a :class:`DistContext`, which the trainer asks for the few things that differ
from one process:

- **data**: :func:`shard_order` gives each rank its own slice of the epoch's permutation, padded
  so every rank runs the same number of steps (DDP would hang otherwise);
- **gradients**: :meth:`DistContext.wrap` puts the training step inside
  ``DistributedDataParallel``, which averages gradients across ranks during ``backward``;
- **in-batch negatives across ranks** (optional): :meth:`DistContext.gather_rows` all-gathers
  item vectors; gradients flow back to each rank's own rows;
- **decisions**: validation runs on rank 0 and :meth:`DistContext.broadcast_object` sends its
  metrics to every rank, so early stopping agrees; only rank 0 writes files.

Without ``torchrun`` (or with one process) :data:`SINGLE` is used and nothing here runs.
``rechub train --nproc N`` starts ``torchrun`` itself through :func:`launch`.

Costs to know: every rank prepares the data itself (memory times N) and DDP all-reduces the
dense gradient of every parameter each step, embedding tables included, so a model whose
item table dominates its size gains little from more processes on one machine.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch import Tensor, nn

from rechub_core.errors import InputError

log = logging.getLogger("rechub.distributed")

__all__ = [
    "SINGLE",
    "DistContext",
    "launch",
    "setup",
    "shard_order",
    "shutdown",
]


def shard_order(order: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's rows of one epoch: ``order[rank::world_size]`` after padding.

    Args:
        order: ``(N,)`` row indices of the whole epoch (the same permutation on every rank).
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: number of processes.
    Returns:
        ``(ceil(N / world_size),)`` row indices. ``order`` is first padded by repeating its
        start up to a multiple of ``world_size``, so every rank gets the same number of rows
        (and steps); a padded row is seen twice in that epoch, as with
        ``torch.utils.data.DistributedSampler``.
    """
    if world_size <= 1:
        return order
    n = int(order.shape[0])
    per_rank = -(-n // world_size)
    total = per_rank * world_size
    if total > n:
        reps = -(-total // max(n, 1))
        order = order.repeat(reps)[:total] if n else order.new_zeros(total)
    return order[rank:total:world_size]


class _GatherRows(torch.autograd.Function):
    """All-gather of rows whose number may differ per rank; backward all-reduces the gradient
    of the gathered rows (every rank's loss may use every row) and keeps this rank's part."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int], rank: int, group: Any) -> Tensor:
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        padded = x.new_zeros((max(sizes), *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous(), group=group)
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        total = grad.contiguous().clone()
        dist.all_reduce(total, group=ctx.group)  # sum over ranks of d(loss_r) / d(rows)
        start = sum(ctx.sizes[: ctx.rank])
        return total[start : start + ctx.sizes[ctx.rank]], None, None, None


class _StepModule(nn.Module):
    """Lets DDP see the training step as ``forward``: DDP syncs gradients only for outputs of
    its own ``forward``, while rechub's models are called through ``encode_user`` /
    ``encode_item``. ``forward`` returns the step's scalar loss."""

    def __init__(self, model: nn.Module, step: Callable[..., Tensor]) -> None:
        super().__init__()
        self.model = model
        self._step = step

    def forward(self, *args: Any) -> Tensor:
        return self._step(*args)


@attrs.define(eq=False)
class DistContext:
    """Where this process stands in a data-parallel job.

    Attributes:
        rank: this process's rank (0 = the one that evaluates and writes files).
        world_size: number of processes; 1 means single-process training.
        local_rank: rank on this machine (picks the CUDA device).
        backend: "gloo" or "nccl" ("" when single).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    _gather_group: Any = None

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that validates and writes checkpoints."""
        return self.rank == 0

    def seed_offset(self) -> int:
        """Added to per-epoch seeds, so that ranks draw different negatives and dropout."""
        return 104_729 * self.rank

    def wrap(self, module: nn.Module, step: Callable[..., Tensor]) -> nn.Module:
        """``DistributedDataParallel`` around ``step`` (a function computing one batch's loss
        with ``module``): calling the result runs ``step`` and averages gradients across
        ranks in ``backward``. Rank 0's weights are broadcast to all ranks here."""
        from torch.nn.parallel import DistributedDataParallel

        # static_graph: every step of a run uses the same parameters (the trainer's code path
        # is fixed per run), so DDP learns after the first step which ones get no gradient
        # (a model may leave some unused) without searching the graph at every step
        return DistributedDataParallel(
            _StepModule(module, step), device_ids=None, static_graph=True
        )

    def _group(self) -> Any:
        # a group of its own, so gathering in backward never interleaves with DDP's all-reduce
        if self._gather_group is None:
            self._gather_group = dist.new_group(backend=self.backend)
        return self._gather_group

    def gather_rows(self, x: Tensor) -> tuple[Tensor, int]:
        """Concatenate every rank's ``x`` ``(n_r, ...)`` in rank order (``n_r`` may differ).

        Returns ``(sum n_r, ...)`` and the offset of this rank's rows in it. Differentiable:
        the gradient of the whole result reaches this rank's ``x``.
        """
        if not self.enabled:
            return x, 0
        group = self._group()
        n = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
        counts = [torch.zeros_like(n) for _ in range(self.world_size)]
        dist.all_gather(counts, n, group=group)
        sizes = [int(c.item()) for c in counts]
        out = _GatherRows.apply(x, sizes, self.rank, group)
        return out, sum(sizes[: self.rank])

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Sum of ``values`` over ranks (float64), e.g. loss totals and sample counts."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64)
        if self.backend == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank (picklable objects, e.g. a metrics dict)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank gets here (no-op when single)."""
        if self.enabled:
            dist.barrier()


#: the context of a single-process run
SINGLE = DistContext()
_current: DistContext | None = None
_we_initialised = False


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def setup(device: str | torch.device = "cpu") -> tuple[DistContext, torch.device]:
    """Join the data-parallel job this process belongs to, and pick its device.

    Uses a process group that is already initialised; else, when torchrun's ``WORLD_SIZE``
    is above 1, initialises one (NCCL when ``device`` is CUDA, gloo otherwise). Idempotent.

    Args:
        device: "cpu", "cuda" or "cuda:N"; under torchrun a bare "cuda" becomes
            ``cuda:LOCAL_RANK``.
    Returns:
        ``(context, device)``; :data:`SINGLE` and ``torch.device(device)`` without a job.
    """
    global _current, _we_initialised
    dev = torch.device(device)
    if not dist.is_available() or (not dist.is_initialized() and env_world_size() <= 1):
        return SINGLE, dev
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if backend == "nccl" and not torch.cuda.is_available():
            raise InputError("device 'cuda' was asked for but CUDA is not available")
        dist.init_process_group(backend=backend)
        _we_initialised = True
    world = dist.get_world_size()
    if world <= 1:
        return SINGLE, dev
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if _current is None or _current.world_size != world:
        _current = DistContext(
            rank=dist.get_rank(),
            world_size=world,
            local_rank=local,
            backend=str(dist.get_backend()),
        )
    return _current, dev


def shutdown() -> None:
    """Destroy the process group if :func:`setup` created it (end of a torchrun worker)."""
    global _current, _we_initialised
    if _we_initialised and dist.is_initialized():
        dist.destroy_process_group()
    _current, _we_initialised = None, False


def launch(nproc: int, cli_args: Sequence[str]) -> int:
    """Run ``rechub <cli_args>`` in ``nproc`` processes under torchrun on this machine.

    The same as ``torchrun --standalone --nproc-per-node NPROC -m rechub_core.cli ARGS``,
    run in this process through ``torch.distributed.run`` (no second interpreter to start).
    Each worker gets ``OMP_NUM_THREADS=1`` unless it is set.

    Returns:
        0 when every rank succeeded, else 1 (the failing ranks' errors are logged).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if nproc < 1:
        raise InputError(f"--nproc must be >= 1, got {nproc}")
    argv = ["--standalone", "--nproc-per-node", str(nproc), "-m", "rechub_core.cli", *cli_args]
    log.info("launching: torchrun %s", " ".join(argv))
    saved = os.environ.get("OMP_NUM_THREADS")
    try:
        run(parse_args(argv))
    except ChildFailedError as exc:
        log.error("a rank failed: %s", exc.format_msg())
        return 1
    finally:  # torchrun sets it in the launcher's environment for the workers
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    return 0


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Rows each rank takes per step so that the global batch stays ``batch_size``."""
    return max(1, math.ceil(batch_size / max(world_size, 1)))
