"""``rechub serve``: a run folder as an HTTP recall service (see :mod:`rechub_core.serve`)."""

from pathlib import Path
from typing import Annotated

import typer

from rechub_core.cli import _common
from rechub_core.cli._common import _configure_logging, _fail
from rechub_core.errors import RechubError


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""

    @app.command()
    def serve(
        run: Annotated[Path, typer.Argument(help="Run folder to serve.")],
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    ) -> None:
        """Serve top-K recall over HTTP: POST /recall, GET /health, GET /info,
        POST /admin/reload (swap in another run folder without dropping requests)."""
        from rechub_core.serve import make_app

        _configure_logging(True)
        try:
            application = make_app(run)
        except RechubError as exc:
            _fail(exc)
            return
        import gc

        import uvicorn

        # the loaded run is long-lived: keep the collector from rescanning it (fewer pauses)
        gc.collect()
        gc.freeze()
        _common.console.print(f"serving {run} on http://{host}:{port} (Ctrl-C stops)")
        uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)
