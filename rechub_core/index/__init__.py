"""Item indexes for retrieval: the public base class :class:`Index`, the built-in exact and
faiss (flat, HNSW, IVF) indexes, and :func:`load_index`, which reads any registered index.

- :class:`Index`: what every index is (build / build_from_batches / search with exclusion and
  multi-interest merge / save / load); plugins subclass it (``rechub_plugins_annoy``).
- :class:`ExactIndex`: brute force with numpy matmul; the reference used for evaluation.
- :class:`FaissIndex` (``kind="flat" | "hnsw" | "ivf"``): faiss with inner product.

An index file records the registered name of the index that wrote it and the package that
provides it; :func:`load_index` finds the reader through the plugin registry (the index hook,
:class:`rechub_core.specs.IndexSpec`), so an index a plugin registers is served like a built-in
one, and a file whose plugin is missing says what to install.
"""

from __future__ import annotations

from rechub_core.errors import CheckpointError, PluginNotInstalledError, UnknownComponentError
from rechub_core.index.base import Index, ItemIndex, PathLike
from rechub_core.index.exact import ExactIndex
from rechub_core.index.faiss_index import FaissIndex
from rechub_core.index.storage import IndexFileHeader, read_header

__all__ = [
    "ExactIndex",
    "FaissIndex",
    "Index",
    "IndexFileHeader",
    "ItemIndex",
    "load_index",
    "read_header",
]


def load_index(path: PathLike, name: str | None = None) -> Index:
    """Read the index saved at ``path`` with the registered index that wrote it.

    Args:
        path: an index file written by :meth:`Index.save` (a run folder's ``index.npz``).
        name: the registered index name to read it with (default: the one the file records;
            a run passes its config's ``[index] name``).
    Raises:
        PluginNotInstalledError: no installed plugin registers that index; the message names
            the package that wrote the file.
        CheckpointError: the file is missing, unreadable, or of another kind than ``name``.
    """
    from rechub_core.plugins import get_spec
    from rechub_core.specs import IndexSpec

    header = read_header(path)
    wanted = name or header.kind
    try:
        spec = get_spec("index", wanted)
    except UnknownComponentError as exc:
        package = header.provider or f"the plugin that registers the index {header.kind!r}"
        raise PluginNotInstalledError(
            f"index file {str(path)!r} holds an index of kind {header.kind!r}, but no installed "
            f"plugin registers an index named {wanted!r}; install {package} (e.g. `pip install "
            f"{header.provider or '<that plugin>'}`, or `pip install -e plugins/<its folder>` "
            "from a rechub checkout) and try again"
        ) from exc
    assert isinstance(spec, IndexSpec)
    index = spec.load(path)
    if not isinstance(index, Index):
        raise CheckpointError(
            f"index {spec.name!r} read {str(path)!r} as a {type(index).__name__}, not a "
            "rechub_core.index.Index; its plugin must return an Index subclass from load()"
        )
    return index
