"""``rechub data fetch movielens-100k`` and ``rechub data path``: data sets on a fresh machine.

Downloads go to the cache (``$RECHUB_CACHE``, else ``~/.cache/rechub``), checksum verified;
``rechub train --data movielens-100k`` finds them there without ``--data-dir``.
"""

from pathlib import Path
from typing import Annotated

import typer

from rechub_core.cli import _common
from rechub_core.cli._common import _fail
from rechub_core.errors import InputError, RechubError

#: names ``rechub data fetch`` accepts, each with its aliases
DATASETS = {"movielens-100k": ("movielens-100k", "ml-100k", "movielens")}


def _fetch(name: str, cache_dir: str | None) -> None:
    from rechub_core import datasets

    key = name.strip().lower()
    if key not in DATASETS["movielens-100k"]:
        raise InputError(
            f"unknown data set {name!r}; `rechub data fetch` knows: {', '.join(DATASETS)} "
            "(your own CSV/parquet log needs no fetching: rechub train --data PATH)"
        )
    cache = datasets.default_cache_dir() if cache_dir is None else Path(cache_dir)
    present = datasets.find_movielens_100k(cache)
    if present is not None:
        _common.console.print(f"MovieLens-100K is already in the cache: {present}")
        return
    url, _, _ = datasets.movielens_100k_source()
    _common.console.print(f"fetching MovieLens-100K from {url} into {cache} ...")
    folder = datasets.fetch_movielens_100k(cache)
    _common.console.print(f"MovieLens-100K (checksum verified): {folder}")


def _path() -> None:
    from rechub_core import datasets

    cache = datasets.default_cache_dir()
    data_dir = datasets.default_data_dir()
    found = datasets.find_movielens_100k(data_dir) or datasets.find_movielens_100k(cache)
    _common.console.print(f"cache: {cache}  (set {datasets.ENV_CACHE} to move it)")
    _common.console.print(f"data dir: {data_dir}  (set RECHUB_DATA_DIR to move it)")
    _common.console.print(
        f"movielens-100k: {found}"
        if found is not None
        else "movielens-100k: not found (fetch it: rechub data fetch movielens-100k)"
    )


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    data_app = typer.Typer(
        help="Data sets: fetch MovieLens-100K into the cache, show where data is looked for.",
        no_args_is_help=True,
    )

    @data_app.command("fetch")
    def fetch(
        name: Annotated[str, typer.Argument(help="The data set: movielens-100k.")],
        cache_dir: Annotated[
            str | None,
            typer.Option(help="Cache folder (default: $RECHUB_CACHE or ~/.cache/rechub)."),
        ] = None,
    ) -> None:
        """Download a data set into the cache, checksum verified (once; later calls reuse it)."""
        try:
            _fetch(name, cache_dir)
        except RechubError as exc:
            _fail(exc)

    @data_app.command("path")
    def path() -> None:
        """Where rechub looks for data and keeps downloads, and what it finds there."""
        _path()

    app.add_typer(data_app, name="data")
