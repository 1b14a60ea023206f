"""``rechub list-plugins`` and ``rechub list-components``."""

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from rechub_core.cli import _common
from rechub_core.cli._common import _fail
from rechub_core.errors import RechubError


def _list_plugins(all_: bool, as_json: bool) -> None:
    from rechub_core.plugins import get_host, iter_plugins

    infos = list(iter_plugins(include_builtins=all_))
    # what RECHUB_PLUGINS / RECHUB_DISABLE_PLUGIN_AUTOLOAD kept out, so an empty list is not
    # mistaken for "nothing installed"
    notes = get_host().load_notes()
    if as_json:
        rows = [
            {
                "name": i.name,
                "distribution": i.distribution,
                "version": i.version,
                "status": i.status,
                "error": i.error,
                "builtin": i.builtin,
                "hooks": list(i.hooks),
                "components": {k: list(v) for k, v in i.components.items()},
            }
            for i in infos
        ]
        typer.echo(json.dumps(rows, indent=2))
        for note in notes:
            typer.echo(f"note: {note}", err=True)
        return
    if not infos:
        _common.console.print("No plugins loaded." if notes else "No plugins installed.")
    else:
        _common.console.print(_plugins_table(infos))
    for note in notes:
        _common.console.print(f"note: {escape(note)}", highlight=False)


def _plugins_table(infos: list[Any]) -> Table:
    table = _common._titled_table("rechub plugins")
    for col in ("plugin", "package", "version", "status", "registers"):
        table.add_column(col, no_wrap=col in ("plugin", "version"))
    for i in infos:
        registers = "\n".join(f"{k}: {', '.join(v)}" for k, v in sorted(i.components.items()))
        status = (
            "[green]ok[/]" if i.status == "ok" else f"[red]{i.status}[/]: {escape(i.error or '')}"
        )
        table.add_row(i.name, i.distribution, i.version, status, registers or "-")
    return table


def list_plugins(
    all_: Annotated[bool, typer.Option("--all", help="Also show the core's built-ins.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Installed plugins: package, version, status and what each registers."""
    _list_plugins(all_, as_json)


def list_components_cmd(
    kind: Annotated[
        str | None, typer.Argument(help="tower, encoder, loss, sampler, index or model")
    ] = None,
    pattern: Annotated[str | None, typer.Option(help="Glob on names, e.g. '*softmax*'.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Registered component names by kind."""
    from rechub_core.plugins import list_components
    from rechub_core.specs import KINDS

    try:
        kinds = [kind] if kind else list(KINDS)
        found = {k: list_components(k, pattern) for k in kinds}
    except RechubError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = _common._titled_table("rechub components")
    table.add_column("kind")
    table.add_column("names")
    for k, names in found.items():
        table.add_row(k, ", ".join(names) or "-")
    _common.console.print(table)


def register(app: typer.Typer) -> None:
    """Add the plugin listing commands to ``app``."""
    app.command("list-plugins")(list_plugins)
    app.command("list-components")(list_components_cmd)
