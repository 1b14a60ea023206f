"""Atomic writes and safe loads for checkpoints, indexes and run folders."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rechub_core.errors import CheckpointError


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


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 text."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write JSON (indented, keys in insertion order)."""
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically ``torch.save`` an object of tensors, numbers, strings, lists and dicts."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(..., weights_only=True)`` with a readable error."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no file at {p}; train first or check the path")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read {p}: {exc}; the file is corrupt or not ours") from exc


def ensure_writable_dir(path: str | os.PathLike[str], what: str = "model_path") -> Path:
    """Create ``path`` if needed and prove it is writable, before any long work starts."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=p)
        os.write(fd, b"x" * 4096)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckpointError(
            f"{what} {str(p)!r} is not writable ({exc.strerror or exc}); choose another folder"
        ) from exc
    return p
