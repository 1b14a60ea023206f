"""Atomic writes and safe loads for checkpoints, indexes and run folders.

Every file rechub writes goes through :func:`atomic_path`: a temporary file next to the target
(``.NAME.XXXX.tmp``), flushed to disk, then ``os.replace``-d over the target. A process killed
at any moment (even by SIGKILL) leaves either the old file or the new one, never a partial one;
at worst a stale temporary file, which :func:`remove_stale_temp_files` clears when a run
resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rechub_core.errors import CheckpointError

#: free space every run folder needs at least, in bytes, on top of what its writer estimates
MIN_FREE_BYTES = 32 * 2**20


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
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError
        raise _write_failed(path, exc) from exc


def load_torch(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(..., weights_only=True)`` with a readable error."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no file at {p}; train first or check the path")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read {p}: {exc}; the file is corrupt or not ours") from exc


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
