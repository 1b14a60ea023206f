"""Atomic writes and safe loads for checkpoints, indexes and run folders.

Every file rechub writes goes through :func:`atomic_path`: a temporary file next to the target
(``.NAME.XXXX.tmp``), flushed to disk, then ``os.replace``-d over the target. A process killed
at any moment (even by SIGKILL) leaves either the old file or the new one, never a partial one;
at worst a stale temporary file, which :func:`remove_stale_temp_files` clears when a run
resumes. Files get the mode an ordinary ``open`` would give them (``0o666`` less the umask),
not ``mkstemp``'s ``0o600``.

Fault injection: with ``RECHUB_FAULT_AFTER_WRITES=k`` in the environment, the process kills
itself (SIGKILL) right after its ``k``-th completed write (every :func:`atomic_path` and every
:func:`fault_point`), so tests can stop a run at each of its write points.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rechub_core.errors import CheckpointError

if TYPE_CHECKING:  # torch is imported where it is used: `rechub data path` must not load it
    import torch

#: free space every run folder needs at least, in bytes, on top of what its writer estimates
MIN_FREE_BYTES = 32 * 2**20

#: environment variable: SIGKILL this process after its k-th completed write (tests only)
FAULT_ENV = "RECHUB_FAULT_AFTER_WRITES"
_writes_done = 0


def fault_point() -> None:
    """Count one completed write; kill this process when ``$RECHUB_FAULT_AFTER_WRITES`` says
    this is the write to stop after (see the module docstring)."""
    global _writes_done
    _writes_done += 1
    limit = os.environ.get(FAULT_ENV)
    if limit and _writes_done == int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


def file_mode() -> int:
    """The mode a new file gets from ``open``: ``0o666`` less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    A crash or an exception leaves the old file (or none) in place and no partial file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, file_mode())  # mkstemp made it 0o600
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    fault_point()


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` left in ``folder`` when its process was
    killed mid-write (``.NAME.XXXX.tmp``); returns what was removed. Call it only while no
    other process writes into ``folder``."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def _write_failed(path: str | os.PathLike[str], exc: BaseException) -> CheckpointError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return CheckpointError(
        f"cannot write {os.fspath(path)}: {reason}; free disk space or choose a writable "
        "folder (the previous version of the file, if any, is intact)"
    )


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 text."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _write_failed(path, exc) from exc


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write JSON (indented, keys in insertion order)."""
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically ``torch.save`` an object of tensors, numbers, strings, lists and dicts.

    Raises :class:`CheckpointError` when the file cannot be written (disk full, read-only
    folder); the previous file at ``path`` is then left as it was.
    """
    import torch

    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError
        raise _write_failed(path, exc) from exc


def load_torch(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(..., weights_only=True)`` with a readable error."""
    import torch

    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no file at {p}; train first or check the path")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        # torch's weights_only message runs to a dozen lines: its first one names the problem
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot read {p}: {first}; the file is corrupt or not ours") from exc


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def ensure_writable_dir(
    path: str | os.PathLike[str], what: str = "model_path", min_free_bytes: int | None = None
) -> Path:
    """Create ``path`` if needed and prove it is writable, before any long work starts.

    Args:
        path: the folder.
        what: how error messages name it.
        min_free_bytes: free space (bytes) the caller will write there; the check asks for
            this plus :data:`MIN_FREE_BYTES`. None: no free-space check (readers).
    Raises:
        CheckpointError: the folder cannot be created or written, or its file system has less
            free space than needed (a run then fails before training, not after).
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=p)
        try:
            os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise CheckpointError(
            f"{what} {str(p)!r} is not writable ({exc.strerror or exc}); choose another folder"
        ) from exc
    if min_free_bytes is None:
        return p
    need = int(min_free_bytes) + MIN_FREE_BYTES
    free = shutil.disk_usage(p).free
    if free < need:
        raise CheckpointError(
            f"{what} {str(p)!r} has only {_mib(free)} free on its disk; this run needs about "
            f"{_mib(need)} (checkpoints, weights, index); free space or choose another folder"
        )
    return p


def _nearest_existing(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_file(path: str | os.PathLike[str], what: str, force: bool = False) -> Path:
    """Check, without writing anything, that a file can be written at ``path``.

    Raises:
        CheckpointError: ``path`` is a folder, exists and ``force`` is False, or its folder
            cannot be created or written. One message naming ``what`` (e.g. ``--output``),
            the path and the fix.
    """
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(
            f"{what} {os.fspath(p)!r} is a folder; give a file path, e.g. {os.fspath(p / 'x')!r}"
        )
    if p.exists() and not force:
        raise CheckpointError(
            f"{what} {os.fspath(p)!r} exists; pass --force to overwrite it or choose another path"
        )
    _check_creatable(p.parent, what, p)
    return p


def check_output_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Check, without writing anything, that a folder can be created (or written) at ``path``.

    Raises:
        CheckpointError: ``path`` is a file, or it cannot be created or written.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CheckpointError(
            f"{what} {os.fspath(p)!r} is a file, not a folder; choose a folder path"
        )
    _check_creatable(p, what, p)
    return p


def _check_creatable(folder: Path, what: str, target: Path) -> None:
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise CheckpointError(
            f"{what} {os.fspath(target)!r} is not writable: {os.fspath(base)!r} is a file; "
            "choose another path"
        )
    # access(2), not a probe file: checking must not touch the folder (its mtime included);
    # it answers EROFS on a read-only mount even for root
    if not os.access(base, os.W_OK | os.X_OK):
        raise CheckpointError(
            f"{what} {os.fspath(target)!r} is not writable (no write permission in "
            f"{os.fspath(base)!r}, or a read-only file system); choose a writable path"
        )
