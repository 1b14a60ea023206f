"""rechub plugin: an Annoy item index (``index = {name = "annoy", params = {n_trees = 50}}``)."""

from __future__ import annotations

__all__ = ["AnnoyIndex"]


def __getattr__(name: str) -> object:
    # imported on first use, so that listing plugins does not import annoy
    if name == "AnnoyIndex":
        from rechub_plugins_annoy.index import AnnoyIndex

        return AnnoyIndex
    raise AttributeError(f"module 'rechub_plugins_annoy' has no attribute {name!r}")
