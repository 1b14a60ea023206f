"""``rechub serve RUN``: a run folder as an HTTP recall service (FastAPI on uvicorn).

Endpoints (JSON in and out):

* ``POST /recall`` with ``{"user_id": ID, "k": 20}`` (a user of the run) or ``{"history":
  [ITEM_ID, ...], "k": 20}`` (a cold user described by their recent items, oldest first):
  ``{"items": [ITEM_ID, ...], "scores": [...], "k": ..., "run": ...}``, raw ids, best first.
  Items the user has seen (their run history, or the given history) are excluded unless
  ``"exclude_seen": false``.
  Each answer carries a ``Server-Timing`` header: milliseconds in the ONNX user tower, in the
  index search and in the whole handler.
* ``GET /health``: ``{"status": "ok"}`` once the service answers.
* ``GET /info``: model, run folder, item and user counts, index kind/params, ONNX parity.
* ``POST /admin/reload`` with ``{"run": PATH}`` (or no body: the same folder again): builds
  the new state completely (loads the run, exports and checks its ONNX user tower, loads its
  index), then swaps one reference; requests in flight finish on the old state, later ones use
  the new one, and none is dropped. A run that fails to load leaves the old one serving.

Errors are 4xx JSON ``{"error": {"code": ..., "message": ...}}``: ``unknown_user`` (404),
``unknown_item``, ``bad_k``, ``bad_request`` (422: also fields of the wrong type) and
``malformed_body`` (400: the body is not a JSON object).

The user tower runs in ONNX Runtime from ``RUN/onnx/user_tower.onnx`` (exported at start when
missing or not matching the run's model, as ``rechub export`` does), checked against PyTorch
on real users at start (max abs difference < 1e-4); the index is the run's ``index.npz``,
read by whichever registered index wrote it. Requests are answered on the event loop (one
ONNX call and one index search each, no thread hand-off); reloads build on a worker thread.
"""

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from rechub_core.errors import CheckpointError, InputError, RechubError
from rechub_core.schema import HISTORY

log = logging.getLogger("rechub.serve")

#: largest k a request may ask for
MAX_K = 1000
#: ONNX Runtime and PyTorch may differ by less than this on the parity check (DESIGN.md §5)
PARITY_TOLERANCE = 1e-4
USER_TOWER = Path("onnx") / "user_tower.onnx"


class ServeError(RechubError):
    """A request the service refuses: HTTP ``status``, a stable ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@attrs.frozen
class ServingState:
    """Everything one run needs to answer requests; replaced whole on reload, never mutated.

    Attributes:
        run: the run folder.
        model: the model's registered name.
        session: ONNX Runtime session of the user tower.
        input_names: the user tower's inputs, in the session's order.
        user_inputs: each input's rows for the run's users, ``(U,)`` or ``(U, L)`` int64.
        user_row: raw user id -> row of ``user_inputs``.
        seen_indptr, seen_indices: CSR of each row's seen items (encoded ids).
        encoders: ``user_id`` and ``item_id`` id encoders.
        index: the item index.
        index_info: index kind, package and parameters, for ``/info``.
        max_len: history length L of the model.
        parity: max abs difference ONNX Runtime vs PyTorch measured at load.
        loaded_at: when the state was built (Unix time).
    """

    run: Path
    model: str
    session: Any
    input_names: tuple[str, ...]
    user_inputs: dict[str, np.ndarray]
    user_row: dict[Any, int]
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    encoders: dict[str, Any]
    index: Any
    index_info: dict[str, Any]
    max_len: int
    parity: float
    loaded_at: float

    def info(self) -> dict[str, Any]:
        """What ``GET /info`` returns."""
        return {
            "model": self.model,
            "run": str(self.run),
            "items": len(self.index),
            "users": len(self.user_row),
            "index": self.index_info,
            "user_tower": str(self.run / USER_TOWER),
            "onnx_parity_max_abs_diff": self.parity,
            "max_len": self.max_len,
            "loaded_at": self.loaded_at,
        }


def _user_tower(loaded: Any) -> tuple[Any, float]:
    """The run's ONNX user tower (exported first when missing) and its parity with PyTorch."""
    import onnxruntime as ort

    from rechub_core.export import onnx_max_abs_diff

    path = loaded.path / USER_TOWER
    batch = {k: v[:8] for k, v in loaded.users["inputs"].items()}

    def export() -> float:
        nonlocal path
        from rechub_core.run_folder import RunLock

        try:  # writing into RUN is a writer's act: hold its lock, as `rechub export` does
            with RunLock(loaded.path):
                log.info("exporting the user tower to %s", path)
                loaded.trainer().export_onnx(path, mode="user", example=loaded.example("user"))
        except CheckpointError as exc:  # a train holds RUN: serve from a private copy
            path = Path(tempfile.mkdtemp(prefix="rechub-serve-")) / USER_TOWER.name
            log.warning("%s; exporting the user tower to %s instead", exc, path)
            loaded.trainer().export_onnx(path, mode="user", example=loaded.example("user"))
        return onnx_max_abs_diff(loaded.model, path, "user", batch)

    if not path.is_file():
        diff = export()
    else:
        try:
            diff = onnx_max_abs_diff(loaded.model, path, "user", batch)
        except Exception as exc:  # a tower of another model: other inputs or shapes
            log.warning("%s cannot run this run's users (%s)", path, exc)
            diff = float("inf")
        if not diff < PARITY_TOLERANCE:  # stale: exported from an earlier model in this folder
            log.warning("%s does not match the run's model (%.2e): exporting it again", path, diff)
            diff = export()
    if not diff < PARITY_TOLERANCE:
        raise CheckpointError(
            f"the ONNX user tower {path} differs from the run's PyTorch model by {diff:.2e} "
            f"(limit {PARITY_TOLERANCE}) right after export; report it with the model name"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one request is tiny: threads cost more than they save
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, diff


def load_state(run: str | os.PathLike[str]) -> ServingState:
    """Load a run folder for serving (model, ONNX user tower with its parity check, index)."""
    from rechub_core.index import read_header
    from rechub_core.runs import INDEX_FILE, load_run, load_run_index

    for attempt in range(3):
        loaded = load_run(run)
        session, parity = _user_tower(loaded)
        index = load_run_index(loaded.path, loaded.config)
        header = read_header(loaded.path / INDEX_FILE)
        try:
            loaded.check_current()  # model, ONNX tower and index are of one run
            break
        except CheckpointError:
            if attempt == 2:
                raise
    names = tuple(i.name for i in session.get_inputs())
    inputs = {k: v.numpy().astype(np.int64, copy=False) for k, v in loaded.users["inputs"].items()}
    missing = [n for n in names if n not in inputs]
    if missing:
        raise CheckpointError(f"{loaded.path}: users.pt lacks the user tower inputs {missing}")
    user_enc = loaded.encoders["user_id"]
    raw_users = user_enc.inverse(inputs["user_id"]).tolist()
    return ServingState(
        run=loaded.path,
        model=loaded.config.model.name,
        session=session,
        input_names=names,
        user_inputs={n: inputs[n] for n in names},
        user_row={raw: row for row, raw in enumerate(raw_users)},
        seen_indptr=loaded.users["seen_indptr"].numpy(),
        seen_indices=loaded.users["seen_indices"].numpy(),
        encoders=loaded.encoders,
        index=index,
        index_info={
            "name": loaded.config.index.name,
            "kind": header.kind,
            "package": header.provider,
            "params": dict(loaded.config.index.params),
        },
        max_len=int(loaded.schema.max_len),
        parity=parity,
        loaded_at=time.time(),
    )


# --------------------------------------------------------------------------- answering


def _raw_id(value: Any, encoder: Any, what: str) -> Any:
    """A JSON id as the encoder holds it (ints for int64 ids, text for str ids)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ServeError(422, "bad_request", f"{what} must be an int or a string, got {value!r}")
    if isinstance(value, int) and encoder.id_type != "str":
        return value
    try:
        return encoder.parse(str(value))
    except InputError as exc:
        if what == "user_id":
            raise ServeError(404, "unknown_user", str(exc)) from None
        raise ServeError(422, "unknown_item", str(exc)) from None


def _known(encoder: Any, raw: Any) -> bool:
    try:
        encoder.transform([raw])
    except InputError:
        return False
    return True


def _check_k(k: Any, n_items: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ServeError(422, "bad_k", f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return min(k, n_items)


def _history_inputs(state: ServingState, history: list[Any]) -> tuple[dict[str, Any], np.ndarray]:
    """User tower inputs ``(1, ...)`` for a cold user and their encoded items ``(n,)``."""
    if not isinstance(history, list) or not history:
        raise ServeError(422, "bad_request", "history must be a non-empty list of item ids")
    enc = state.encoders["item_id"]
    raw = [_raw_id(v, enc, "item_id") for v in history]
    try:
        codes = enc.transform(raw).astype(np.int64)  # (n,) encoded, oldest first
    except InputError:
        unknown = [r for r in raw if not _known(enc, r)]
        raise ServeError(
            422,
            "unknown_item",
            f"history holds {len(unknown)} item id(s) this run does not know, e.g. "
            f"{unknown[0]!r}; send only items of the run's catalogue ({len(enc) - 1} items)",
        ) from None
    feeds: dict[str, Any] = {}
    for name in state.input_names:
        sample = state.user_inputs[name]
        if name == HISTORY:
            recent = codes[-state.max_len :]  # the newest L items, right-padded with 0
            row = np.zeros((1, sample.shape[1]), dtype=np.int64)
            row[0, : len(recent)] = recent
            feeds[name] = row
        else:  # user id and profile columns: 0, the padding code, for a user the run never saw
            feeds[name] = np.zeros((1, *sample.shape[1:]), dtype=np.int64)
    return feeds, codes


def recall(
    state: ServingState, body: Any, timings: dict[str, float] | None = None
) -> dict[str, Any]:
    """Answer one ``POST /recall`` body (already parsed JSON) on ``state``; ``timings``, when
    given, receives the seconds spent in the user tower (``onnx``) and the index (``index``)."""
    if not isinstance(body, dict):
        raise ServeError(400, "malformed_body", "the body must be a JSON object")
    unknown_fields = sorted(set(body) - {"user_id", "history", "k", "exclude_seen"})
    if unknown_fields:
        raise ServeError(
            422,
            "bad_request",
            f"unknown field(s) {unknown_fields}; use user_id or history, k and exclude_seen",
        )
    if ("user_id" in body) == ("history" in body):
        raise ServeError(422, "bad_request", "give exactly one of user_id and history")
    k = _check_k(body.get("k", 20), len(state.index))
    exclude_seen = body.get("exclude_seen", True)
    if not isinstance(exclude_seen, bool):
        raise ServeError(
            422, "bad_request", f"exclude_seen must be true or false, got {exclude_seen!r}"
        )
    if "user_id" in body:
        raw = _raw_id(body["user_id"], state.encoders["user_id"], "user_id")
        row = state.user_row.get(raw)
        if row is None:
            raise ServeError(
                404,
                "unknown_user",
                f"user {body['user_id']!r} is not a user of this run; "
                'describe a new user by their items: {"history": [...]}',
            )
        feeds = {n: v[row : row + 1] for n, v in state.user_inputs.items()}
        seen = state.seen_indices[state.seen_indptr[row] : state.seen_indptr[row + 1]]
    else:
        feeds, seen = _history_inputs(state, body["history"])
    start = time.perf_counter()
    (vector,) = state.session.run(["vector"], feeds)  # (1, D) or (1, K, D)
    encoded = time.perf_counter()
    exclude = [seen.tolist()] if exclude_seen else None
    ids, scores = state.index.search(np.asarray(vector, dtype=np.float32), k, exclude=exclude)
    if timings is not None:
        timings["onnx"] = encoded - start
        timings["index"] = time.perf_counter() - encoded
    valid = ids[0] > 0
    items = state.encoders["item_id"].inverse(ids[0][valid]).tolist()
    return {
        "items": items,
        "scores": [round(float(s), 6) for s in scores[0][valid]],
        "k": k,
        "run": str(state.run),
    }


# --------------------------------------------------------------------------- the application


class StateHolder:
    """The current :class:`ServingState`: one reference, swapped whole by :meth:`reload`."""

    def __init__(self, state: ServingState) -> None:
        self.state = state
        self._reloading = asyncio.Lock()

    async def reload(self, run: str | os.PathLike[str] | None) -> dict[str, Any]:
        """Build the state of ``run`` (default: the current folder) on a worker thread, then
        swap it in; one reload at a time."""
        async with self._reloading:
            previous = self.state.run
            target = Path(run) if run is not None else previous
            start = time.perf_counter()
            try:
                new = await asyncio.to_thread(load_state, target)
            except RechubError as exc:
                raise ServeError(422, "bad_run", f"{target} cannot be served: {exc}") from None
            self.state = new  # the swap: one reference assignment
            return {
                "run": str(new.run),
                "previous": str(previous),
                "seconds": round(time.perf_counter() - start, 3),
            }


def make_app(run: str | os.PathLike[str], state: ServingState | None = None) -> Any:
    """The FastAPI application serving ``run`` (loaded now unless ``state`` is given)."""
    import json

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    holder = StateHolder(state or load_state(run))
    app = FastAPI(title="rechub recall service", version="1")
    app.state.holder = holder

    def error(exc: ServeError) -> JSONResponse:
        return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, exc.status)

    async def body_of(request: Request, required: bool = True) -> Any:
        raw = await request.body()
        if not raw.strip():
            if required:
                raise ServeError(400, "malformed_body", "the body is empty; send a JSON object")
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ServeError(400, "malformed_body", f"the body is not valid JSON ({exc})") from None

    @app.post("/recall")
    async def post_recall(request: Request) -> JSONResponse:
        start = time.perf_counter()
        timings: dict[str, float] = {}
        try:
            response = JSONResponse(recall(holder.state, await body_of(request), timings))
        except ServeError as exc:
            return error(exc)
        timings["total"] = time.perf_counter() - start
        response.headers["Server-Timing"] = ", ".join(
            f"{name};dur={seconds * 1000:.3f}" for name, seconds in timings.items()
        )
        return response

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return holder.state.info()

    @app.post("/admin/reload")
    async def reload(request: Request) -> JSONResponse:
        try:
            body = await body_of(request, required=False)
            if not isinstance(body, dict) or not isinstance(body.get("run", ""), str):
                raise ServeError(400, "malformed_body", 'send {"run": "PATH"} or no body')
            return JSONResponse(await holder.reload(body.get("run")))
        except ServeError as exc:
            return error(exc)

    return app
