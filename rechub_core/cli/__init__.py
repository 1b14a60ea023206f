"""The ``rechub`` command line (typer), built in :func:`make_app` so that nothing runs at import.

One module per command group: ``plugins_cmds`` (list-plugins, list-components), ``train_cmds``
(train, demo), ``run_cmds`` (evaluate, export, recall), ``data_cmds`` (data fetch, data path),
``serve_cmds`` (serve);
shared console, errors and tables in ``_common``. Plugins add commands through the
``rechub_register_commands(app)`` hook.
``python -m rechub_core.cli`` runs it too, which is how ``torchrun`` starts data-parallel
workers: ``torchrun --nproc-per-node 2 -m rechub_core.cli train ...`` (or ``rechub train
--nproc 2``).
"""

from typing import Annotated

import typer

from rechub_core.cli import data_cmds, plugins_cmds, run_cmds, serve_cmds, train_cmds
from rechub_core.cli._common import _version_callback


def make_app() -> typer.Typer:
    """Build the ``rechub`` application (core commands plus plugins' commands)."""
    app = typer.Typer(
        name="rechub",
        help="Retrieval models for recommender systems: train, evaluate, export, recall.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def main_callback(
        version: Annotated[
            bool,
            typer.Option(
                "--version", callback=_version_callback, is_eager=True, help="Show the version."
            ),
        ] = False,
    ) -> None:
        """rechub command line."""

    for group in (plugins_cmds, train_cmds, run_cmds, data_cmds, serve_cmds):
        group.register(app)

    from rechub_core.plugins import get_host

    get_host().call_register_commands(app)
    return app


def main() -> None:
    """Console-script entry point."""
    app = make_app()
    app(prog_name="rechub")
