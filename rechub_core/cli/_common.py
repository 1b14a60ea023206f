"""Shared pieces of the ``rechub`` commands: the console, error exit, metric tables, logging."""

import logging

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    raise typer.Exit(code=1)


def _metrics_table(title: str, columns: dict[str, dict[str, float]], keys: list[str]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for key in keys:
        table.add_row(key, *(f"{columns[c].get(key, float('nan')):.4f}" for c in columns))
    return table


METRIC_KEYS = ["hit@10", "ndcg@10", "mrr@10", "hit@20", "ndcg@20", "hit@50", "ndcg@50", "recall@50"]


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
