"""Shared pieces of the ``rechub`` commands: the console, error exit, metric tables, logging."""

import logging

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rechub_core.metric_names import DEFAULT_KS, METRIC_NAMES

console = Console()


def _fail(exc: Exception) -> None:
    # one line however narrow the terminal: tests and users grep it, and the fix is at its end
    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


#: the metrics the tables show (from the torch-free rechub_core.metric_names)
METRIC_KS = DEFAULT_KS
METRIC_KEYS = [f"{name}@{k}" for name in METRIC_NAMES for k in METRIC_KS]


def _titled_table(title: str) -> Table:
    """A table at least as wide as its title, so the title does not wrap onto two lines."""
    return Table(title=title, min_width=min(len(title) + 4, console.width))


def _metrics_table(title: str, columns: dict[str, dict[str, float]], keys: list[str]) -> Table:
    """One row per metric name, one column per (model, cut-off): ``keys`` such as
    ``"ndcg@10"`` grouped so that two models at three cut-offs fit 80 columns."""
    names: list[str] = []
    ks: list[str] = []
    for key in keys:
        name, _, k = key.partition("@")
        names += [name] * (name not in names)
        ks += [k] * (k not in ks)
    table = _titled_table(title)
    table.add_column("metric")
    for model in columns:
        for i, k in enumerate(ks):
            table.add_column(f"{model} @{k}" if i == 0 else f"@{k}", justify="right")
    for name in names:
        cells = [
            f"{columns[model].get(f'{name}@{k}', float('nan')):.4f}"
            for model in columns
            for k in ks
        ]
        table.add_row(name, *cells)
    return table


def invoked_as() -> str:
    """How the user ran rechub, for hints they can paste: ``rechub`` when that is on PATH and is
    this program, else the path they typed (``.venv/bin/rechub``), or ``python -m
    rechub_core.cli``."""
    import os
    import shutil
    import sys

    argv0 = sys.argv[0] if sys.argv else "rechub"
    if argv0.endswith(("__main__.py", "-c")) or not argv0:
        return f"{os.path.basename(sys.executable)} -m rechub_core.cli"
    on_path = shutil.which("rechub")
    if on_path and os.path.realpath(on_path) == os.path.realpath(argv0):
        return "rechub"
    return argv0


def _configure_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # it logs which SIMD build it loaded


def _version_callback(value: bool) -> None:
    if value:
        from rechub_core import __version__

        typer.echo(f"rechub {__version__}")
        raise typer.Exit()
