"""Run folders that never lie: staged writes, one atomic swap, one writer at a time.

Layout, for a run folder ``RUN``:

* ``RUN/`` — the committed run. Its ``run.json`` (format, run id, time) is written last, so a
  folder that holds it is complete. Nothing writes into a committed ``RUN`` except ``rechub
  export`` (``RUN/onnx``) and index builds, under the lock.
* ``RUN.staging/`` — where a train writes (config first, then checkpoints, weights, metrics,
  index, ``run.json``). A killed train leaves its state here and ``RUN`` untouched;
  ``rechub train --resume --out RUN`` continues from it.
* ``RUN.lock`` — the writers' lock (``fcntl.flock``, exclusive, non-blocking) holding the
  holder's pid for the message a second writer gets. The kernel releases a flock when its
  process dies, so a dead writer's lock file is simply taken over.

Commit: the complete staging folder and ``RUN`` are exchanged with one
``renameat2(RENAME_EXCHANGE)`` (Linux), so a reader opening ``RUN`` finds the old complete run
or the new complete run, never a mix; the old run, now at ``RUN.staging``, is then deleted.
Where the exchange is not available the old run is renamed aside first (``RUN.old-PID``) and
the staging folder renamed in: a reader may then briefly find no ``RUN`` (it says so), still
never a mix. A writer killed between the two renames leaves a complete ``RUN.staging`` that the
next writer renames in. :func:`rechub_core.runs.load_run` re-reads ``run.json`` after loading
and retries when a commit happened meanwhile.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from types import TracebackType

from rechub_core.errors import CheckpointError
from rechub_core.io import fault_point, file_mode, write_json

log = logging.getLogger("rechub.runs")

MARKER = "run.json"
STAGING_SUFFIX = ".staging"
LOCK_SUFFIX = ".lock"
#: files of a run folder written before ``run.json`` existed (accepted, with a warning)
LEGACY_REQUIRED = ("config.toml", "schema.json", "encoders.json", "model.pt", "users.pt")
_RESUME_FILES = ("config.toml", "checkpoint.pt")


def staging_path(run: str | os.PathLike[str]) -> Path:
    """``RUN.staging``: where a train of ``run`` writes before it commits."""
    p = Path(run)
    return p.with_name(p.name + STAGING_SUFFIX)


def lock_path(run: str | os.PathLike[str]) -> Path:
    """``RUN.lock``: the writers' lock file of ``run``."""
    p = Path(run)
    return p.with_name(p.name + LOCK_SUFFIX)


def run_id(run: str | os.PathLike[str]) -> str | None:
    """The id in ``RUN/run.json``, or None when the folder holds no commit marker."""
    try:
        return str(json.loads((Path(run) / MARKER).read_text(encoding="utf-8"))["run_id"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{Path(run) / MARKER} is damaged ({exc}); retrain with `rechub train --out {run}`"
        ) from None


def is_run(folder: Path) -> bool:
    """A committed run, or a run folder written before commit markers (has config.toml)."""
    return (folder / MARKER).is_file() or (folder / "config.toml").is_file()


class RunLock:
    """Exclusive writer's lock of a run folder (``RUN.lock``, see the module docstring).

    Raises :class:`CheckpointError` naming the holder's pid when another process holds it.
    """

    def __init__(self, run: str | os.PathLike[str]) -> None:
        self.run = Path(run)
        self.path = lock_path(run)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
            except OSError as exc:
                raise CheckpointError(
                    f"cannot lock run folder {os.fspath(self.run)!r}: {exc.strerror or exc} "
                    f"({os.fspath(self.path)!r}); check the path"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise CheckpointError(
                    f"run folder {os.fspath(self.run)!r} is being written by process {holder} "
                    f"(lock {os.fspath(self.path)!r}); wait for it to finish or stop it, or "
                    "choose another --out"
                ) from None
            # the previous holder may have unlinked the file between our open and our flock:
            # then we hold a lock nobody else can see; start again on the current file
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is None:
            return
        try:  # unlink while still holding it; see the samestat check in __enter__
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


def check_target(run: Path, force: bool) -> None:
    """Refuse ``run`` when it is a file, or a non-empty folder that is not a rechub run
    (unless ``force``: the folder is then moved aside at commit, never deleted)."""
    if run.exists() and not run.is_dir():
        raise CheckpointError(
            f"run folder {os.fspath(run)!r} is a file; choose a folder path for --out"
        )
    if run.is_dir() and not is_run(run) and any(run.iterdir()) and not force:
        raise CheckpointError(
            f"{os.fspath(run)!r} is a non-empty folder that is not a rechub run; choose another "
            "--out, or pass --force to replace it (its files are then moved to "
            f"{run.name}.replaced-TIME, not deleted)"
        )


def prepare_staging(run: Path, resume: bool) -> Path:
    """Make ``RUN.staging`` ready for a train (call with the :class:`RunLock` held).

    Without ``resume`` it starts empty. With ``resume`` a killed train's staging folder is
    kept; when there is none, a committed run's config and checkpoint are copied into a fresh
    one (resuming a finished run re-finishes it). Leftovers of a writer killed mid-commit are
    cleared first.
    """
    staging = staging_path(run)
    _recover(run)
    if staging.is_dir() and (staging / MARKER).is_file():
        shutil.rmtree(staging)  # an old run swapped out by a commit killed before deleting it
    if staging.exists() and not resume:
        log.info("discarding the interrupted run's state in %s (no --resume)", staging)
        shutil.rmtree(staging)
    if not staging.exists():
        staging.mkdir(parents=True)
        if resume and (run / "checkpoint.pt").is_file():
            for name in _RESUME_FILES:
                if (run / name).is_file():
                    shutil.copy2(run / name, staging / name)
    return staging


def _recover(run: Path) -> None:
    """Finish a commit whose writer died between its two renames (fallback path only)."""
    staging = staging_path(run)
    if not run.exists() and (staging / MARKER).is_file():
        os.rename(staging, run)
    for old in run.parent.glob(f"{run.name}.old-*"):
        if old.is_dir() and is_run(old):
            shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise CheckpointError(
        f"cannot commit run {os.fspath(b)!r}: {os.strerror(err)}; the new run is complete in "
        f"{os.fspath(a)!r}"
    )


def commit(staging: Path, run: Path) -> Path | None:
    """Write ``run.json`` into the complete ``staging`` folder and make it ``run`` atomically.

    Returns:
        Where a replaced folder that was not a rechub run (``--force``) was moved, else None.
    """
    write_json(
        staging / MARKER,
        {"format": 1, "run_id": uuid.uuid4().hex, "committed": time.time()},
    )
    if not run.exists():
        os.rename(staging, run)
        fault_point()
        return None
    if _exchange(staging, run):
        old = staging
    else:
        old = run.with_name(f"{run.name}.old-{os.getpid()}")
        os.rename(run, old)
        fault_point()
        os.rename(staging, run)
    fault_point()
    if is_run(old) or not any(old.iterdir()):
        shutil.rmtree(old)
        return None
    kept = run.with_name(f"{run.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    os.rename(old, kept)
    log.warning("%s was not a rechub run; its files were moved to %s", run, kept)
    return kept


def check_complete(run: Path) -> str | None:
    """Raise :class:`CheckpointError` unless ``run`` is a complete run folder.

    Returns:
        Its run id (None for a complete folder written before commit markers).
    """
    staging = staging_path(run)
    interrupted = (staging / "config.toml").is_file() and not (staging / MARKER).is_file()
    resume = f"finish it with `rechub train --resume --out {os.fspath(run)}`"
    if not run.exists():
        if (staging / MARKER).is_file():
            raise CheckpointError(
                f"{os.fspath(run)!r} is being committed (the complete run is in "
                f"{os.fspath(staging)!r}); try again, or if no train is running, finish the "
                f"commit with `rechub train --resume --out {os.fspath(run)}`"
            )
        if interrupted:
            raise CheckpointError(
                f"{os.fspath(run)!r} has no complete run yet: its train was interrupted (state "
                f"in {os.fspath(staging)!r}); {resume}"
            )
        raise CheckpointError(
            f"no run folder at {os.fspath(run)!r}; train one with `rechub train --out "
            f"{os.fspath(run)}`"
        )
    if not run.is_dir():
        raise CheckpointError(f"{os.fspath(run)!r} is a file, not a run folder")
    rid = run_id(run)
    if rid is not None:
        return rid
    missing = [n for n in LEGACY_REQUIRED if not (run / n).exists()]
    if missing:
        fix = (
            resume
            if interrupted or (run / "checkpoint.pt").is_file()
            else (f"train it with `rechub train --out {os.fspath(run)}`")
        )
        raise CheckpointError(
            f"{os.fspath(run)!r} is not a complete run folder (missing {missing[0]}); {fix}"
        )
    log.warning("%s has no %s (written by an older rechub); loading it as it is", run, MARKER)
    return None
