"""Registration of the Annoy index with rechub (entry point ``rechub: annoy``).

Registered lazily (``"module:Class"``): listing plugins imports neither annoy nor numpy code
of the index; ``create("index", "annoy", ...)`` and loading a saved index import it.
"""

from __future__ import annotations

from collections.abc import Iterator

from rechub_core.hookspecs import hookimpl
from rechub_core.specs import IndexSpec


@hookimpl
def rechub_register_indexes() -> Iterator[IndexSpec]:
    yield IndexSpec(
        name="annoy",
        factory="rechub_plugins_annoy.index:AnnoyIndex",
        description="Annoy random projection forest (angular / dot)",
    )
