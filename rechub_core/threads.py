"""How many intra-op threads a training process uses.

PyTorch's default is one thread per core of the machine, whatever else runs: on a 2-core
machine next to one other job, two threads per process made an epoch about 4x slower than one
(issue #14). :func:`pick_threads` chooses a number that never oversubscribes the cores this
process may run on:

* an explicit request (``--threads N``, ``train.threads``) wins;
* else ``OMP_NUM_THREADS``, when set, is respected;
* else ``cores - round(load)``, clamped to ``[1, cores]``, where ``cores`` is
  ``len(os.sched_getaffinity(0))`` divided among the data-parallel processes of this machine
  and ``load`` the 1-minute load average (what else runs), so an idle 2-core machine gets 2
  and a 2-core machine with one busy job gets 1.
"""

from __future__ import annotations

import logging
import os

import torch

from rechub_core.errors import InputError

log = logging.getLogger("rechub.threads")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def pick_threads(
    requested: int | None = None, processes: int = 1, load: float | None = None
) -> tuple[int, str]:
    """``(threads, reason)`` by the rule in the module docstring.

    Args:
        requested: an explicit thread count (None: choose).
        processes: data-parallel processes sharing this machine's cores.
        load: the machine's load average (None: ``os.getloadavg()[0]``).
    """
    if requested is not None:
        if requested < 1:
            raise InputError(f"threads must be >= 1, got {requested}; or leave it unset (auto)")
        return int(requested), "requested"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    cores = available_cores()
    share = max(1, cores // max(1, processes))
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
    free = cores - round(load)
    threads = max(1, min(share, free))
    return threads, f"auto: {cores} cores, load {load:.2f}, {processes} process(es)"


def apply_threads(requested: int | None = None, processes: int = 1) -> int:
    """Pick (see :func:`pick_threads`), set ``torch.set_num_threads`` and log the choice;
    returns the thread count."""
    threads, reason = pick_threads(requested, processes)
    torch.set_num_threads(threads)
    log.info("threads: %d (%s)", threads, reason)
    return threads
