"""Load test of ``rechub serve``: latency percentiles and queries/s over real HTTP.

    python -m benchmarks.serve [--scenarios ml100k,hnsw1m] [--concurrency 1,8,32]
        [--requests 3000] [--n-items 1000000]

Two run folders, each served by ``rechub serve RUN`` in its own process (``OMP_NUM_THREADS=1``)
and loaded by an async HTTP client in this process (``--client aiohttp``, the default, or
``httpx``), on the same machine:

* ``ml100k``: SASRec trained on MovieLens-100K (``--ml-epochs`` epochs; latency does not depend
  on quality) with the exact index (``ExactIndex``, 1,682 items).
* ``hnsw1m``: a SASRec run folder over a synthetic catalogue of ``--n-items`` items (default
  1,000,000) and 10,000 users with random 50-item histories, untrained weights (seed 0), and a
  faiss HNSW index (M=16, efSearch=64) of its item vectors. It is written with the same
  functions ``rechub train`` uses (config, schema, encoders, weights payload, users, index),
  because training and full-ranking evaluation on a 1M catalogue does not fit here; serving
  cost does not depend on the weights' values.

Each request is ``POST /recall {"user_id": U, "k": 20}`` for a random user of the run (seen
items excluded, as by default). Per concurrency level C: ``C`` workers send requests back to
back (a closed loop) until ``--requests`` have been answered, after 200 warm-up requests.
Latency is client-side (request sent to body read); queries/s = answered / wall time. The
server's ``Server-Timing`` header splits its handler time into the ONNX user tower and the
index search; their medians are reported to say what dominates.

Run folders are cached in ``benchmarks/.work/serve/`` (the 1M build takes minutes). Writes
``benchmarks/results/serve.json`` and ``serve.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, WORK, machine, machine_line, publish

HOME = WORK / "serve"


def log(msg: str) -> None:
    print(f"[serve {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- run folders


def ml100k_run(epochs: int, data_dir: str | None) -> Path:
    """SASRec on MovieLens-100K with the exact index (trained once, then cached)."""
    from rechub_core.config import ComponentConfig, DataConfig, RunConfig, TrainConfig
    from rechub_core.runs import train_run

    out = HOME / "sasrec-ml100k"
    if (out / "index.npz").is_file():
        return out
    cfg = RunConfig(
        model=ComponentConfig("SASRec"),
        data=DataConfig(source="movielens-100k", data_dir=data_dir),
        train=TrainConfig(epochs=epochs),
        index=ComponentConfig("exact"),
    )
    log(f"training SASRec on MovieLens-100K for {epochs} epochs -> {out}")
    train_run(cfg, out, verbose=False)
    return out


def synthetic_run(n_items: int, n_users: int = 10_000, max_len: int = 50) -> Path:
    """A SASRec run folder over ``n_items`` synthetic items with an HNSW index (cached)."""
    import torch

    from rechub_core import __version__
    from rechub_core.config import ComponentConfig, DataConfig, RunConfig, save_config
    from rechub_core.io import save_torch, write_json
    from rechub_core.plugins import create, get_spec
    from rechub_core.preprocess import IdEncoder
    from rechub_core.runs import INDEX_FILE, build_model
    from rechub_core.schema import DataSchema
    from rechub_core.trainer import BEST_WEIGHTS, FORMAT_VERSION

    out = HOME / f"sasrec-hnsw-{n_items}"
    if (out / INDEX_FILE).is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    index_cfg = ComponentConfig("faiss", {"kind": "hnsw", "hnsw_m": 16, "ef_search": 64})
    cfg = RunConfig(
        model=ComponentConfig("SASRec"),
        data=DataConfig(source="synthetic", max_len=max_len),
        index=index_cfg,
    )
    schema = DataSchema(vocab={"user_id": n_users + 1, "item_id": n_items + 1}, max_len=max_len)
    spec = get_spec("model", "SASRec")
    torch.manual_seed(0)
    model = build_model(spec, schema, {}).eval()
    rng = np.random.default_rng(0)
    hist = torch.from_numpy(rng.integers(1, n_items + 1, size=(n_users, max_len)))  # (U, L)
    seen_indptr = torch.arange(0, n_users * max_len + 1, max_len)
    save_config(cfg, out / "config.toml")
    write_json(out / "schema.json", schema.to_dict())
    encoders = {
        "user_id": IdEncoder("user_id").fit(np.arange(1, n_users + 1)),
        "item_id": IdEncoder("item_id").fit(np.arange(1, n_items + 1)),
    }
    write_json(out / "encoders.json", {k: e.to_dict() for k, e in encoders.items()})
    payload = {
        "format": FORMAT_VERSION,
        "rechub_version": __version__,
        "model_class": type(model).__name__,
        "state_dict": model.state_dict(),
    }
    save_torch(out / BEST_WEIGHTS, payload)
    items = torch.arange(n_items + 1)
    save_torch(
        out / "users.pt",
        {
            "inputs": {"user_id": torch.arange(1, n_users + 1), "hist_item_id": hist},
            "target": torch.zeros(n_users, dtype=torch.int64),
            "seen_indptr": seen_indptr,
            "seen_indices": hist.reshape(-1),
            "items": {"item_id": items},
            "titles": [],
        },
    )
    log(f"encoding {n_items:,} items and building the HNSW index")
    index = create("index", "faiss", **index_cfg.params)
    start = time.perf_counter()

    def batches() -> Any:
        with torch.no_grad():
            for lo in range(1, n_items + 1, 65_536):
                ids = items[lo : lo + 65_536]
                yield model.encode_item({"item_id": ids}).numpy(), ids.numpy()

    index.build_from_batches(batches(), n_total=n_items)
    log(f"index built in {time.perf_counter() - start:.0f} s")
    index.save(out / INDEX_FILE)
    return out


# --------------------------------------------------------------------------- load test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(run: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rechub = Path(sys.executable).with_name("rechub")
    cmd = [str(rechub), "serve", str(run), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, f"http://127.0.0.1:{port}"


async def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 900) -> float:
    import httpx

    start = time.perf_counter()
    async with httpx.AsyncClient() as client:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"rechub serve exited ({proc.returncode}): {err[-2000:]}")
            try:
                if (await client.get(f"{base}/health")).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"rechub serve did not answer within {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_timing(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


@contextlib.asynccontextmanager
async def http_client(kind: str, concurrency: int) -> Any:
    """``post(url, body) -> (status, Server-Timing header)`` over one pooled client of
    ``kind``: ``httpx`` (``httpx.AsyncClient``) or ``aiohttp`` (``aiohttp.ClientSession``,
    about half the client CPU per request here)."""
    if kind == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def post_httpx(url: str, body: Any) -> tuple[int, str]:
                r = await client.post(url, json=body)
                return r.status_code, r.headers.get("server-timing", "")

            yield post_httpx
        return
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post_aiohttp(url: str, body: Any) -> tuple[int, str]:
            async with session.post(url, json=body) as r:
                await r.read()
                return r.status, r.headers.get("server-timing", "")

        yield post_aiohttp


async def load(
    base: str,
    users: list[Any],
    concurrency: int,
    args: argparse.Namespace,
    server_pid: int,
) -> dict[str, Any]:
    """``args.requests`` answered requests from ``concurrency`` closed-loop workers; also the
    CPU time the server and this client spent per request (independent of what else shares
    the cores)."""
    latencies: list[float] = []
    stages: dict[str, list[float]] = {"onnx": [], "index": [], "total": []}
    failures = 0
    remaining = args.requests
    rng = random.Random(concurrency)
    url = f"{base}/recall"

    async def worker(post: Any) -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            body = {"user_id": rng.choice(users), "k": args.k}
            t = time.perf_counter()
            status, timing = await post(url, body)
            latencies.append(time.perf_counter() - t)
            failures += status != 200
            for name, ms in server_timing(timing).items():
                stages[name].append(ms)

    async with http_client(args.client, concurrency) as post:
        for _ in range(200):  # warm-up: connections, ONNX Runtime and index caches
            await post(url, {"user_id": users[0], "k": args.k})
        start = time.perf_counter()
        server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
        await asyncio.gather(*(worker(post) for _ in range(concurrency)))
        wall = time.perf_counter() - start
        server_cpu = cpu_seconds(server_pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "failures": failures,
        "qps": len(latencies) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "server_median_ms": {k: float(np.median(v)) for k, v in stages.items() if v},
        "server_cpu_ms_per_request": 1000 * server_cpu / len(latencies),
        "client_cpu_ms_per_request": 1000 * client_cpu / len(latencies),
    }


async def scenario(name: str, run: Path, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    proc, base = start_server(run)
    try:
        ready = await wait_ready(base, proc)
        async with httpx.AsyncClient() as client:
            info = (await client.get(f"{base}/info")).json()
        log(
            f"{name}: serving {info['items']:,} items ({info['index']['kind']}), "
            f"ready in {ready:.1f} s"
        )
        import json

        from rechub_core.preprocess import IdEncoder

        encoders = json.loads((run / "encoders.json").read_text())
        users = IdEncoder.from_dict(encoders["user_id"]).classes.tolist()
        levels = []
        for c in (int(v) for v in args.concurrency.split(",")):
            result = await load(base, users, c, args, proc.pid)
            result["load_average"] = [round(x, 2) for x in os.getloadavg()]
            log(
                f"  c={c}: p50 {result['p50_ms']:.2f} p95 {result['p95_ms']:.2f} p99 "
                f"{result['p99_ms']:.2f} ms, {result['qps']:.0f} QPS, stages "
                f"{result['server_median_ms']}, CPU ms/request server "
                f"{result['server_cpu_ms_per_request']:.2f} client "
                f"{result['client_cpu_ms_per_request']:.2f}"
            )
            levels.append(result)
        return {
            "name": name,
            "run": str(run.relative_to(ROOT)),
            "ready_s": ready,
            "info": info,
            "levels": levels,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --------------------------------------------------------------------------- report


def markdown(res: dict[str, Any], command: str, info: dict[str, Any]) -> str:
    lines = [
        "# rechub serve: latency and throughput over HTTP",
        "",
        f"Command: `{command}`  ",
        machine_line(info),
        "",
        "Server: `rechub serve RUN` (FastAPI + uvicorn, one process, `OMP_NUM_THREADS=1`); "
        f"client: `{res['client']}` (async, one pooled session) in another process on the "
        "**same 2 cores**, closed loop "
        f"(C workers, each sends its next request when the last is answered), {res['requests']:,} "
        f'requests per level after 200 warm-up ones; `POST /recall {{"user_id": U, "k": '
        f"{res['k']}}}` for random users, seen items excluded. Latency measured by the client "
        "(send to body read). Server median: the `Server-Timing` header (ONNX user tower, "
        "index search, whole handler).",
        "",
        "| run | items | index | C | QPS | p50 ms | p95 ms | p99 ms | server median: onnx / "
        "index / handler ms | CPU ms per request: server / client | failed | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for sc in res["scenarios"]:
        for lv in sc["levels"]:
            st = lv["server_median_ms"]
            lines.append(
                f"| {sc['name']} | {sc['info']['items']:,} | {sc['info']['index']['kind']} "
                f"{sc['info']['index']['params'] or ''} | {lv['concurrency']} | {lv['qps']:,.0f} "
                f"| {lv['p50_ms']:.2f} | {lv['p95_ms']:.2f} | {lv['p99_ms']:.2f} | "
                f"{st.get('onnx', float('nan')):.2f} / {st.get('index', float('nan')):.2f} / "
                f"{st.get('total', float('nan')):.2f} | {lv['server_cpu_ms_per_request']:.2f} / "
                f"{lv['client_cpu_ms_per_request']:.2f} | {lv['failures']} | "
                f"{lv['load_average'][0]} |"
            )
    t = res["target"]
    lines += [
        "",
        f"Target ({t['rule']}): **{'met' if t['met'] else 'not met'}** ({t['observed']}).",
        "",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenarios", default="ml100k,hnsw1m")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp")
    ap.add_argument("--n-items", type=int, default=1_000_000)
    ap.add_argument("--ml-epochs", type=int, default=3)
    ap.add_argument("--data-dir", default=None, help="MovieLens-100K folder")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--name", default="serve")
    args = ap.parse_args(argv)
    info = machine()
    runs = {}
    for name in args.scenarios.split(","):
        if name == "ml100k":
            runs[name] = ml100k_run(args.ml_epochs, args.data_dir)
        elif name == "hnsw1m":
            runs[name] = synthetic_run(args.n_items)
        else:
            raise SystemExit(f"unknown scenario {name!r}; use ml100k and/or hnsw1m")
    scenarios = [asyncio.run(scenario(n, r, args)) for n, r in runs.items()]
    big = next((s for s in scenarios if s["name"] == "hnsw1m"), None)
    level8 = next((lv for lv in big["levels"] if lv["concurrency"] == 8), None) if big else None
    target = {
        "rule": "1M-item HNSW run at concurrency 8: p99 <= 25 ms and >= 300 queries/s",
        "met": bool(level8 and level8["p99_ms"] <= 25 and level8["qps"] >= 300),
        "observed": (
            f"p99 {level8['p99_ms']:.1f} ms, {level8['qps']:.0f} queries/s"
            if level8
            else "not measured"
        ),
    }
    res = {
        "requests": args.requests,
        "k": args.k,
        "client": args.client,
        "scenarios": scenarios,
        "target": target,
    }
    print(publish(args.name, "benchmarks.serve", argv, info, res, markdown, args.out))


if __name__ == "__main__":
    main()
