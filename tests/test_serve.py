"""``rechub serve`` end to end: two tiny runs are trained, ``rechub serve`` runs as a
subprocess on a free port, and every endpoint is called over HTTP — the answers, the exclusion
of seen items, every 4xx error, the documented Python client (docs/serving.md), and a swap to
another run folder under concurrent requests, in which no request may fail."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from rechub_core.config import ComponentConfig, DataConfig, RunConfig, TrainConfig
from rechub_core.runs import load_run, train_run

REPO = Path(__file__).resolve().parent.parent


def tiny_run(out: Path, seed: int, index: ComponentConfig) -> Path:
    cfg = RunConfig(
        model=ComponentConfig("YoutubeDNN"),
        data=DataConfig(source="synthetic", synthetic_users=150, synthetic_items=80, max_len=10),
        train=TrainConfig(epochs=1, seed=seed),
        index=index,
    )
    train_run(cfg, out, verbose=False)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("serve")
    a = tiny_run(root / "run_a", 1, ComponentConfig("exact"))
    b = tiny_run(root / "run_b", 2, ComponentConfig("faiss", {"kind": "flat"}))
    return a, b


@pytest.fixture(scope="module")
def server(runs: tuple[Path, Path]) -> str:
    """``rechub serve RUN_A`` on a free port; its base URL."""
    port = free_port()
    rechub = Path(sys.executable).with_name("rechub")
    cmd = [str(rechub), "serve", str(runs[0]), "--port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"rechub serve did not start: {out}")
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


def test_health_and_info(server: str, runs: tuple[Path, Path]) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    info = httpx.get(f"{server}/info").json()
    assert info["model"] == "YoutubeDNN"
    assert info["run"] == str(runs[0])
    assert info["items"] == 80 and info["users"] > 0
    assert info["index"]["kind"] == "exact" and info["index"]["package"] == "rechub"
    assert info["onnx_parity_max_abs_diff"] < 1e-4
    assert (runs[0] / "onnx" / "user_tower.onnx").is_file()  # exported at start


def test_recall_by_user_excludes_seen_items(server: str, runs: tuple[Path, Path]) -> None:
    loaded = load_run(runs[0])
    users = loaded.users
    row = 3
    user = loaded.encoders["user_id"].inverse(users["inputs"]["user_id"][row : row + 1].numpy())
    indptr, indices = users["seen_indptr"].numpy(), users["seen_indices"].numpy()
    seen = set(loaded.encoders["item_id"].inverse(indices[indptr[row] : indptr[row + 1]]).tolist())
    r = httpx.post(f"{server}/recall", json={"user_id": int(user[0]), "k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == len(body["scores"]) == body["k"] == 10
    assert not seen & set(body["items"])
    assert body["scores"] == sorted(body["scores"], reverse=True)
    assert re.fullmatch(
        r"onnx;dur=[\d.]+, index;dur=[\d.]+, total;dur=[\d.]+", r.headers["server-timing"]
    )
    # every item, seen ones included, when asked not to exclude them
    everything = httpx.post(
        f"{server}/recall", json={"user_id": int(user[0]), "k": 80, "exclude_seen": False}
    ).json()
    assert sorted(everything["items"]) == sorted(loaded.encoders["item_id"].classes.tolist())
    # the CLI's recall (PyTorch) agrees with the service (ONNX Runtime)
    from rechub_core.runs import recall

    frame = recall(loaded, [int(user[0])], 10)
    assert frame["item_id"].tolist() == body["items"]
    np.testing.assert_allclose(frame["score"].to_numpy(), body["scores"], atol=1e-4)


def test_recall_by_history_for_a_cold_user(server: str, runs: tuple[Path, Path]) -> None:
    items = load_run(runs[0]).encoders["item_id"].classes.tolist()
    history = items[:5]
    body = httpx.post(f"{server}/recall", json={"history": history, "k": 7}).json()
    assert len(body["items"]) == 7 and not set(history) & set(body["items"])
    as_text = httpx.post(f"{server}/recall", json={"history": [str(i) for i in history], "k": 7})
    assert as_text.json()["items"] == body["items"]  # "12" means item 12 in an int-id run


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"user_id": 10**9}, 404, "unknown_user"),
        ({"user_id": "not-a-user"}, 404, "unknown_user"),
        ({"history": [10**9]}, 422, "unknown_item"),
        ({"history": []}, 422, "bad_request"),
        ({"history": "12"}, 422, "bad_request"),
        ({"user_id": 1, "k": 0}, 422, "bad_k"),
        ({"user_id": 1, "k": 1001}, 422, "bad_k"),
        ({"user_id": 1, "k": "5"}, 422, "bad_k"),
        ({"user_id": 1, "history": [1]}, 422, "bad_request"),
        ({}, 422, "bad_request"),
        ({"user": 1}, 422, "bad_request"),
        ({"user_id": 1, "exclude_seen": "no"}, 422, "bad_request"),
        ([1, 2], 400, "malformed_body"),
    ],
)
def test_errors_are_4xx_json(server: str, body: object, status: int, code: str) -> None:
    r = httpx.post(f"{server}/recall", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["message"]


def test_malformed_json_and_empty_body(server: str) -> None:
    for content in (b'{"user_id": 1', b"", b"\xff"):
        r = httpx.post(f"{server}/recall", content=content)
        assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_body", r.text


def test_the_documented_client_runs(server: str, runs: tuple[Path, Path], capsys) -> None:
    text = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"<!-- client example -->\n```python\n(.*?)```", text, flags=re.DOTALL)
    loaded = load_run(runs[0])
    user = int(loaded.encoders["user_id"].inverse(loaded.users["inputs"]["user_id"][:1].numpy())[0])
    history = loaded.encoders["item_id"].classes[:3].tolist()
    code = code.replace('BASE = "http://127.0.0.1:8000"', f"BASE = {server!r}")
    exec(compile(code, "docs/serving.md", "exec"), {"USER_ID": user, "HISTORY": history})
    out = capsys.readouterr().out
    assert "YoutubeDNN serving 80 items" in out
    assert "422 bad_k: k must be an integer from 1 to 1000, got 0" in out


def test_swap_under_concurrent_requests_drops_nothing(server: str, runs: tuple[Path, Path]) -> None:
    run_a, run_b = runs
    users = load_run(run_a).encoders["user_id"].classes.tolist()[:20]

    async def scenario() -> tuple[list[tuple[int, str]], httpx.Response, httpx.Response]:
        seen: list[tuple[int, str]] = []
        done = asyncio.Event()
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:

            async def worker(i: int) -> None:
                n = 0
                while not done.is_set() or n < 20:
                    r = await client.post("/recall", json={"user_id": users[(i + n) % 20], "k": 5})
                    seen.append((r.status_code, r.json().get("run", r.text)))
                    n += 1

            workers = [asyncio.create_task(worker(i)) for i in range(8)]
            await asyncio.sleep(0.5)
            swapped = await client.post("/admin/reload", json={"run": str(run_b)})
            await asyncio.sleep(0.5)
            bad = await client.post("/admin/reload", json={"run": str(run_b / "missing")})
            done.set()
            await asyncio.gather(*workers)
        return seen, swapped, bad

    seen, swapped, bad = asyncio.run(scenario())
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["previous"] == str(run_a) and swapped.json()["run"] == str(run_b)
    assert all(status == 200 for status, _ in seen), [s for s in seen if s[0] != 200][:3]
    runs_seen = [run for _, run in seen]
    assert str(run_a) in runs_seen and str(run_b) in runs_seen
    assert runs_seen[-1] == str(run_b)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_run"
    assert httpx.get(f"{server}/info").json()["run"] == str(run_b)  # the failed reload kept B
    back = httpx.post(f"{server}/admin/reload", json={"run": str(run_a)})
    assert back.status_code == 200 and httpx.get(f"{server}/info").json()["run"] == str(run_a)


def test_evaluate_through_the_exact_index_matches_the_full_ranking(runs) -> None:
    from rechub_core.index.evaluate import index_metrics

    loaded = load_run(runs[0])
    exact = loaded.trainer().evaluate(loaded.user_loader())
    through = index_metrics(loaded)
    assert through.keys() == exact.keys()
    for key, value in exact.items():
        assert through[key] == pytest.approx(value, abs=1e-6), key


def test_a_stale_onnx_tower_is_exported_again(runs, tmp_path) -> None:
    import shutil

    from rechub_core.serve import USER_TOWER, load_state

    load_state(runs[1])  # run B's tower exists now
    copy = tmp_path / "run_a"
    shutil.copytree(runs[0], copy)
    (copy / USER_TOWER).parent.mkdir(exist_ok=True)
    shutil.copyfile(runs[1] / USER_TOWER, copy / USER_TOWER)  # another model's tower
    state = load_state(copy)
    assert state.parity < 1e-4
    assert (copy / USER_TOWER).read_bytes() != (runs[1] / USER_TOWER).read_bytes()


def test_serving_a_run_that_a_writer_holds_exports_outside_it(runs, tmp_path) -> None:
    """Exporting the user tower writes into RUN, so serve takes RUN.lock like `rechub export`;
    when a train holds it, the tower goes to a private folder and RUN is left untouched."""
    import shutil

    from rechub_core.run_folder import RunLock
    from rechub_core.serve import USER_TOWER, load_state

    copy = tmp_path / "run_a"
    shutil.copytree(runs[0], copy)
    shutil.rmtree(copy / USER_TOWER.parent, ignore_errors=True)
    with RunLock(copy):  # another writer (its own open file: flock conflicts in-process too)
        state = load_state(copy)
    assert state.parity < 1e-4
    assert not (copy / USER_TOWER).exists()
    load_state(copy)  # lock free: exported into the run as before
    assert (copy / USER_TOWER).is_file()
