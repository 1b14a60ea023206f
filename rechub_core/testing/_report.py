"""What a conformance check reports and how a kit runs its checks, shared by the model and the
index kits: the result records and errors, where in the model's (or backend's) own code an
exception came from, the scratch folder the checks write to, and :func:`run_checks`.

PYTEST_DONT_REWRITE: like the package, pytest need not rewrite it.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import attrs

from rechub_core.errors import RechubError

#: what the checks of a kit receive (the model kit's context, the index kit's case)
T = TypeVar("T")


class ConformanceError(RechubError):
    """A model failed the conformance kit; the message lists each failed check and its fix."""


class CheckFailed(Exception):
    """Raised inside a check: ``problem`` says what was observed, ``fix`` what to change."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


class CheckSkipped(Exception):
    """Raised inside a check that does not apply to the model (the reason is the message)."""


@attrs.frozen
class CheckResult:
    """The outcome of one check.

    Attributes:
        check: its name (one of :data:`CHECKS`, or "build" when the model could not be built;
            the checks are then "skipped").
        status: "passed", "failed" or "skipped".
        message: for a failure, one line naming the model, the check, what was wrong and what
            to fix; for a skip, why it does not apply.
        seconds: time it took.
    """

    check: str
    status: str
    message: str = ""
    seconds: float = 0.0


@attrs.frozen
class ConformanceReport:
    """What :func:`check_model` found for one model."""

    model: str
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [r for r in self.results if r.status == "failed"]

    def result(self, check: str) -> CheckResult:
        """The result of ``check``."""
        for r in self.results:
            if r.check == check:
                return r
        raise KeyError(f"check {check!r} did not run; ran: {[r.check for r in self.results]}")

    def __str__(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in ("passed", "failed")}
        skipped = len(self.results) - counts["passed"] - counts["failed"]
        lines = [
            f"rechub conformance of {self.model}: {counts['passed']} passed, "
            f"{counts['failed']} failed, {skipped} skipped"
        ]
        for r in self.results:
            detail = f": {r.message}" if r.message else ""
            lines.append(f"  {r.status.upper():7} {r.check} ({r.seconds:.2f}s){detail}")
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise :class:`ConformanceError` listing every failed check (and its fix)."""
        if self.failures:
            raise ConformanceError("\n".join(r.message for r in self.failures))


def one_line(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return " ".join(text.split())


#: frames of these packages are not the model's own code
_LIBRARY_PARTS = frozenset({"rechub_core", "torch", "onnx", "onnxruntime", "pluggy"})


def where_in_model(exc: BaseException) -> str:
    """`` (at file:line in function)`` of the innermost frame in the model's own code."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not _LIBRARY_PARTS & set(Path(f.filename).parts)
    ]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at {Path(f.filename).name}:{f.lineno} in {f.name})"


@contextlib.contextmanager
def scratch_folder(
    workdir: str | Path | None, prefix: str = "rechub-conformance-"
) -> Iterator[Path]:
    """``workdir`` as a Path (created), or a temporary folder removed on exit."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def run_checks(
    label: str,
    selected: Sequence[str],
    functions: Mapping[str, Callable[[T], None]],
    subject: T,
    fix_for_errors: str,
) -> list[CheckResult]:
    """Run ``functions[check](subject)`` for each selected check and time it: returning is a
    pass, :class:`CheckSkipped` a skip, :class:`CheckFailed` a failure with its fix, and any
    other exception a failure naming where it was raised and ``fix_for_errors``."""
    results: list[CheckResult] = []
    for check in selected:
        start = time.perf_counter()
        try:
            functions[check](subject)
        except CheckSkipped as exc:
            results.append(CheckResult(check, "skipped", str(exc), time.perf_counter() - start))
            continue
        except CheckFailed as exc:
            fix = f" Fix: {exc.fix}" if exc.fix else ""
            message = f"{label}: check '{check}' failed: {exc.problem}.{fix}"
        except Exception as exc:
            message = (
                f"{label}: check '{check}' failed: it raised {one_line(exc)}"
                f"{where_in_model(exc)}. Fix: {fix_for_errors}"
            )
        else:
            results.append(CheckResult(check, "passed", "", time.perf_counter() - start))
            continue
        results.append(CheckResult(check, "failed", message, time.perf_counter() - start))
    return results
