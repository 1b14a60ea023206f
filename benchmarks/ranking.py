"""Full-ranking evaluation speed: users ranked in chunks of 4,096 (the old default) against the
cache-sized chunks ``chunk_size=None`` picks on the CPU, and MostPop by sorting against MostPop
through a (users x items) score matrix, side by side in one run.

    python -m benchmarks.ranking [--repeats 3] [--threads 1] [--out benchmarks/results]

Shapes are those of the standard benchmark's validation splits (random vectors, width 64):
MovieLens-100K (943 users, 1,682 items), Sports_and_Outdoors (35,598 users, 18,357 items) and a
100k-item catalogue (10,000 users), one vector a user and four (a multi-interest model's
``(U, 4, D)``). Each variant ranks every user ``--repeats`` times in a row (the old one first,
then the new one on the same inputs); the median is reported. The new variant's ranks (MostPop:
metrics) are checked equal to the old one's.

Writes ``ranking.json`` and ``ranking.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, fmt, machine_line, publish
from benchmarks.common import machine as machine_info
from rechub_core.metrics import (
    default_chunk_size,
    full_ranking_metrics,
    most_popular_metrics,
    target_ranks,
)

#: (name, users, items) of the measured shapes
SHAPES = (
    ("MovieLens-100K", 943, 1_682),
    ("Sports_and_Outdoors", 35_598, 18_357),
    ("100k items", 10_000, 100_000),
)
DIM = 64
OLD_CHUNK = 4096


def _problem(users: int, items: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random targets, 3-11 seen items a user (CSR) and item counts for ``users x items``."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 12, (users,), generator=gen)
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    return {
        "targets": torch.randint(1, items + 1, (users,), generator=gen),
        "indptr": indptr,
        "indices": torch.randint(1, items + 1, (int(indptr[-1]),), generator=gen),
        "counts": torch.randint(0, 200, (items + 1,), generator=gen),
    }


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def measure(repeats: int, shapes: tuple[tuple[str, int, int], ...] = SHAPES) -> dict[str, Any]:
    """Median seconds of each variant on each ``(name, users, items)`` shape, and whether its
    output equals the old variant's."""
    rows = []
    for name, users, items in shapes:
        p = _problem(users, items)
        item_vectors = torch.randn(items + 1, DIM, generator=torch.Generator().manual_seed(1))
        auto = default_chunk_size(items + 1, torch.device("cpu"))
        for interests in (1, 4):
            shape = (users, interests, DIM) if interests > 1 else (users, DIM)
            user_vectors = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
            args = (user_vectors, item_vectors, p["targets"], p["indptr"], p["indices"])
            old_t, old_ranks = _timed(partial(target_ranks, *args, chunk_size=OLD_CHUNK), repeats)
            new_t, new_ranks = _timed(partial(target_ranks, *args, chunk_size=None), repeats)
            equal = bool(torch.equal(old_ranks, new_ranks))
            what = f"model, {interests} vector(s) a user"
            rows.append(_row(name, users, items, what, OLD_CHUNK, auto, old_t, new_t, equal))
        ones = torch.ones(users, 1, dtype=torch.float64)
        table = p["counts"].to(torch.float64)[:, None]
        csr = (p["targets"], p["indptr"], p["indices"])
        old_t, old_m = _timed(
            partial(full_ranking_metrics, ones, table, *csr, chunk_size=OLD_CHUNK), repeats
        )
        new_t, new_m = _timed(partial(most_popular_metrics, p["counts"], *csr), repeats)
        rows.append(
            _row(name, users, items, "MostPop", OLD_CHUNK, None, old_t, new_t, old_m == new_m)
        )
    return {"repeats": repeats, "dim": DIM, "rows": rows}


def _row(
    data: str,
    users: int,
    items: int,
    what: str,
    old_chunk: int,
    new_chunk: int | None,
    old_t: list[float],
    new_t: list[float],
    equal: bool,
) -> dict[str, Any]:
    old, new = statistics.median(old_t), statistics.median(new_t)
    return {
        "data": data,
        "users": users,
        "items": items,
        "what": what,
        "old_chunk": old_chunk,
        "new_chunk": new_chunk,
        "old_seconds": old,
        "new_seconds": new,
        "speedup": old / new,
        "equal": equal,
    }


def to_markdown(res: dict[str, Any], command: str, info: dict[str, Any]) -> str:
    """The report as a markdown table with the command, the machine and its load."""
    load = ", ".join(f"{x:.2f}" for x in res["load_average"])
    lines = [
        "# Full-ranking evaluation speed",
        "",
        f"`{command}` (load average {load} at the start; median of {res['repeats']} "
        f"repeats, {res['threads']} thread(s)). Width {res['dim']}, random vectors. "
        '"old": 4,096 users a '
        'chunk (and MostPop through the score matrix); "new": `chunk_size=None` (users a '
        'chunk = 2**21 // items on the CPU) and MostPop by sorting the counts. "equal": the '
        "new ranks (MostPop: metrics) are the old ones exactly.",
        "",
        machine_line(info),
        "",
        "| data (users x items) | scored | old s (chunk) | new s (chunk) | speed-up | equal |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        new_chunk = "sorted" if r["new_chunk"] is None else r["new_chunk"]
        lines.append(
            f"| {r['data']} ({r['users']:,} x {r['items']:,}) | {r['what']} | "
            f"{fmt(r['old_seconds'])} ({r['old_chunk']}) | {fmt(r['new_seconds'])} "
            f"({new_chunk}) | {r['speedup']:.1f}x | {'yes' if r['equal'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info()
    res = {
        "load_average": list(os.getloadavg()),
        "threads": args.threads,
        **measure(args.repeats),
    }
    print(publish("ranking", "benchmarks.ranking", argv, info, res, to_markdown, args.out))


if __name__ == "__main__":
    main()
