"""The names of the ranking metrics and their default cut-offs, in a module that imports
nothing heavy: ``rechub_core.metrics`` computes them, and the CLI's tables and the config
checks name them without importing torch (``rechub --help`` must not)."""

from __future__ import annotations

__all__ = ["DEFAULT_KS", "METRIC_NAMES"]

DEFAULT_KS: tuple[int, ...] = (10, 20, 50)
"""Cut-offs reported by default (DESIGN.md §4)."""

METRIC_NAMES: tuple[str, ...] = ("recall", "precision", "ndcg", "hit", "mrr")
"""Metric names, in the order they appear in the returned dictionaries."""
