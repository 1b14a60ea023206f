"""Conformance kit: does a retrieval model honour rechub's model contract?

Every check builds a fresh model (fixed seed) on small synthetic data and runs on the CPU, so a
model takes a few seconds. Use it from code::

    from rechub_core.testing import check_model

    report = check_model("MyModel")  # a registered name, a ModelSpec, or a factory(schema)
    report.raise_for_failures()      # ConformanceError naming each failed check and its fix

or from pytest, by opting in with ``pytest -p rechub_core.testing`` or
``pytest_plugins = ["rechub_core.testing"]`` in a test module, through the fixture::

    def test_my_model_conforms(rechub_conformance):
        rechub_conformance("MyModel")

The checks, in order (:data:`CHECKS`):

* ``shapes``: ``encode_user`` gives ``(B, D)`` (``(B, K, D)`` when ``multi_interest``),
  ``encode_item`` gives ``(N, D)`` with the same D, finite float32, and ``logits`` ``(B, N)``.
* ``padding``: appending and prepending padding ids (0) to a user sequence feature leaves the
  user vectors unchanged (histories are right-padded, and left padding must not fool a model
  either; ``pad_sides`` narrows it); skipped when the user side has no sequences.
* ``recency``: in a history longer than any model's window, changing only the newest item
  changes the user vectors (histories are oldest first and a model keeps the newest items:
  ``docs/protocol.md``); skipped when the user side has no sequences.
* ``batch``: in eval mode a row encoded alone equals the same row inside a batch, and encoding
  twice gives the same vectors (users and items).
* ``steps``: ``encode_user_steps`` gives ``(B, L, D)`` (or ``(B, L, K, D)``), is causal, and
  its state at a position equals ``encode_user`` of the history up to that position (at the
  last real one: of the whole history); skipped when not implemented.
* ``gradients``: one training loss (the model's train_defaults loss and sampler, computed by
  ``MatchTrainer.batch_loss`` exactly as in training) reaches every trainable parameter.
* ``state_dict``: weights saved and loaded the way run folders do (``weights_only=True``) into
  a model built with another seed give identical vectors.
* ``onnx``: both towers export with :func:`rechub_core.export.export_tower` and match PyTorch
  (max abs diff < 1e-4) on other batch sizes (1 included) and, for sequences, another length.
* ``training``: a few epochs of ``MatchTrainer.fit`` with the model's train_defaults lower the
  training loss, and full-ranking metrics afterwards are finite.

Item indexes have their own checks: :func:`check_index` (fixture ``rechub_index_conformance``).

The module imports pytest (the ``test`` extra), for its fixtures. PYTEST_DONT_REWRITE: the
kit raises its own errors, so pytest need not rewrite it, and a test
module may import it before ``pytest_plugins`` registers it without a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rechub_core.preprocess import PreparedData
from rechub_core.testing._context import (
    ATOL,
    ITEM_ROWS,
    LONG_HISTORY,
    MIN_LOSS_DROP,
    ONNX_TOLERANCE,
    USER_ROWS,
    ModelSource,
    conformance_data,
)
from rechub_core.testing._report import (
    CheckFailed,
    CheckResult,
    CheckSkipped,
    ConformanceError,
    ConformanceReport,
)
from rechub_core.testing._runner import CHECKS, assert_conforms, check_index, check_model

__all__ = [
    "ATOL",
    "CHECKS",
    "ITEM_ROWS",
    "LONG_HISTORY",
    "MIN_LOSS_DROP",
    "ONNX_TOLERANCE",
    "USER_ROWS",
    "CheckFailed",
    "CheckResult",
    "CheckSkipped",
    "ConformanceError",
    "ConformanceReport",
    "ModelSource",
    "assert_conforms",
    "check_index",
    "check_model",
    "conformance_data",
    "pytest_report_header",
    "rechub_conformance",
    "rechub_conformance_data",
    "rechub_index_conformance",
]


@pytest.fixture(scope="session")
def rechub_conformance_data() -> PreparedData:
    """The small synthetic data the kit builds and trains on (session-wide)."""
    return conformance_data()


def _failing_runner(
    check: Callable[..., ConformanceReport], **defaults: Any
) -> Callable[..., ConformanceReport]:
    """``check`` with ``defaults`` for the keywords not given, failing the running test with
    the report (each failed check and its fix) when a check fails."""

    def run(subject: Any, **kwargs: Any) -> ConformanceReport:
        report = check(subject, **{**defaults, **kwargs})
        if not report.ok:
            pytest.fail(str(report), pytrace=False)
        return report

    return run


@pytest.fixture
def rechub_conformance(
    tmp_path: Path, rechub_conformance_data: PreparedData
) -> Callable[..., ConformanceReport]:
    """``rechub_conformance(model, **kwargs)`` runs :func:`check_model` in ``tmp_path`` and
    fails the test with the report (each failed check and its fix) when a check fails."""
    return _failing_runner(
        check_model, data=rechub_conformance_data, workdir=tmp_path / "conformance"
    )


@pytest.fixture
def rechub_index_conformance(tmp_path: Path) -> Callable[..., ConformanceReport]:
    """``rechub_index_conformance(index, **kwargs)`` runs :func:`check_index` in ``tmp_path``
    and fails the test with the report when a check fails."""
    return _failing_runner(check_index, workdir=tmp_path / "index-conformance")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One header line listing the rechub plugins found (and any that failed to load)."""
    from rechub_core.plugins import iter_plugins

    found = [f"{i.name} {i.version} ({i.status})" for i in iter_plugins()]
    return [f"rechub plugins: {', '.join(found) or 'none'}"]
