"""The index file format: one uncompressed ``.npz`` written atomically.

Every index file holds ``format``, ``version``, ``kind`` (the registered index name that wrote
it, e.g. ``"exact"``, ``"faiss"``, ``"annoy"``), ``provider`` (the distribution that registers
that name, for the "install this plugin" message), ``config`` (JSON) and ``ids``, plus the
index's own entries. Entries named ``faiss_index``, ``faiss_shard_<i>`` or ``blob_<name>`` are
raw bytes (a ``uint8`` ``.npy``) streamed in and out without a serialised copy in memory: a
writer gives a :class:`StreamEntry` (or :class:`FileEntry`), a reader gets a
:class:`NpzEntry` it can stream or copy to a file.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import attrs
import numpy as np

from rechub_core.errors import CheckpointError
from rechub_core.io import atomic_path

__all__ = [
    "FORMAT",
    "VERSION",
    "FileEntry",
    "IndexFileHeader",
    "NpzEntry",
    "StreamEntry",
    "atomic_savez",
    "read_header",
    "read_payload",
]

FORMAT = "rechub-item-index"
VERSION = 1
SHARD_PREFIX = "faiss_shard_"
BLOB_PREFIX = "blob_"
_REQUIRED = ("format", "version", "kind", "config", "ids")

PathLike = str | os.PathLike[str]


def is_stream_entry(key: str) -> bool:
    """Whether entry ``key`` holds raw bytes, read on demand (see the module docstring)."""
    return key == "faiss_index" or key.startswith((SHARD_PREFIX, BLOB_PREFIX))


class StreamEntry:
    """Raw bytes to save as a ``uint8`` ``.npy`` entry, written by a callback.

    Args:
        size: the number of bytes ``write`` will produce (the ``.npy`` header needs it first).
        write: ``write(f)`` writes exactly ``size`` bytes to the binary file ``f``.
    """

    def __init__(self, size: int, write: Callable[[IO[bytes]], None]) -> None:
        self.size = int(size)
        self._write = write

    def write(self, f: IO[bytes]) -> None:
        """Write the ``.npy`` header and the bytes to ``f``."""
        header = {"descr": "|u1", "fortran_order": False, "shape": (self.size,)}
        np.lib.format.write_array_header_1_0(f, header)
        self._write(f)


class FileEntry(StreamEntry):
    """A file's bytes as an entry (an index library that only saves to files, e.g. Annoy)."""

    def __init__(self, path: PathLike) -> None:
        source = Path(path)

        def copy(f: IO[bytes]) -> None:
            with source.open("rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)

        super().__init__(source.stat().st_size, copy)


class NpzEntry:
    """One raw-bytes entry of an index file, read on demand."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The entry's bytes as a binary file positioned after the ``.npy`` header."""
        with zipfile.ZipFile(self.path) as zf, zf.open(f"{self.key}.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            if dtype != np.uint8 or len(shape) != 1:
                raise CheckpointError(
                    f"index file {str(self.path)!r}: entry {self.key!r} is not a raw-bytes entry; "
                    "rebuild the index and save it again"
                )
            yield f

    def copy_to(self, target: PathLike) -> Path:
        """Write the entry's bytes to the file ``target``; returns its path."""
        out = Path(target)
        with self.open() as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return out


def atomic_savez(path: PathLike, arrays: Mapping[str, np.ndarray | StreamEntry]) -> None:
    """An uncompressed ``.npz`` (what ``np.savez`` writes, readable by ``np.load``),
    atomically (temp file in the same folder, then ``os.replace``); stream entries are written
    one after another straight into the file."""
    target = Path(path)
    try:
        with (
            atomic_path(target) as tmp,
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf,
        ):
            for name, value in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    if isinstance(value, StreamEntry):
                        value.write(f)
                    else:
                        np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    except OSError as exc:
        raise CheckpointError(
            f"index path {str(target)!r} is not writable ({exc}); choose a writable location"
        ) from exc


def _check_meta(p: Path, data: Any) -> None:
    """Raise unless the open ``np.load`` result ``data`` is a rechub index file we can read."""
    for key in _REQUIRED:
        if key not in data.files:
            raise CheckpointError(
                f"index file {str(p)!r} lacks the {key!r} entry; it was not written by "
                "rechub's Index.save — rebuild and save it again"
            )
    if str(data["format"]) != FORMAT:
        raise CheckpointError(
            f"index file {str(p)!r} has format {str(data['format'])!r}, expected {FORMAT!r}"
        )
    if int(data["version"]) > VERSION:
        raise CheckpointError(
            f"index file {str(p)!r} has version {int(data['version'])}, newer than this "
            f"rechub reads ({VERSION}); upgrade rechub or rebuild the index"
        )


@contextmanager
def _open_npz(path: PathLike) -> Iterator[tuple[Path, Any]]:
    """The checked index file at ``path`` opened with ``np.load`` (entries read lazily)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"index file {str(p)!r} does not exist; save an index there first")
    try:
        with np.load(p, allow_pickle=False) as data:
            _check_meta(p, data)
            yield p, data
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(
            f"index file {str(p)!r} is not a readable rechub index ({exc}); "
            "rebuild it and save it again"
        ) from exc


def read_payload(path: PathLike) -> dict[str, Any]:
    """The entries of an index file: arrays, and raw-bytes entries as :class:`NpzEntry`."""
    with _open_npz(path) as (p, data):
        return {key: NpzEntry(p, key) if is_stream_entry(key) else data[key] for key in data.files}


@attrs.frozen
class IndexFileHeader:
    """What an index file says about itself, read without its vectors.

    Attributes:
        kind: the registered index name that wrote it ("exact", "faiss", "annoy", ...).
        provider: the distribution that registers that name ("" in files from before it was
            recorded).
        n_items: number of indexed items.
    """

    kind: str
    provider: str
    n_items: int


def read_header(path: PathLike) -> IndexFileHeader:
    """The kind, provider and size of the index saved at ``path``."""
    with _open_npz(path) as (_, data):  # reads only these entries, not the vectors
        provider = str(data["provider"]) if "provider" in data.files else ""
        return IndexFileHeader(str(data["kind"]), provider, int(data["ids"].shape[0]))
