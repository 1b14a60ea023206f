"""Commands on a run folder: ``rechub evaluate``, ``rechub export``, ``rechub recall``."""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from rechub_core.cli import _common
from rechub_core.cli._common import METRIC_KEYS, _fail, _metrics_table
from rechub_core.errors import RechubError

#: the largest ONNX-vs-PyTorch difference accepted (MatchTrainer.export_onnx's tolerance)
ONNX_TOLERANCE = 1e-4


def _parity_line(model: Any, path: Path, side: str, example: Any) -> str:
    """Check the exported tower with onnxruntime against PyTorch and say what was checked."""
    from rechub_core.export import onnx_max_abs_diff

    diff = onnx_max_abs_diff(model, path, side, example)
    if not diff < ONNX_TOLERANCE:
        raise RechubError(
            f"the ONNX {side} tower {path} differs from PyTorch by {diff:.2e} (max abs, "
            f"onnxruntime), over {ONNX_TOLERANCE:.0e}; report it with the model name"
        )
    rows = len(next(iter(example.values())))
    return (
        f"{side} tower: {path}\n  onnxruntime vs PyTorch on {rows} rows: max abs diff "
        f"{diff:.1e} (< {ONNX_TOLERANCE:.0e})"
    )


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    through_index: Annotated[
        bool,
        typer.Option(
            help="Retrieve through the run's item index (what recall and serve return; "
            "approximate indexes lose some recall) instead of the exact full ranking."
        ),
    ] = False,
) -> None:
    """Recompute test metrics of a run folder."""
    from rechub_core.runs import load_run

    try:
        loaded = load_run(run)
        if through_index:
            from rechub_core.index.evaluate import index_metrics

            metrics = index_metrics(loaded)
        else:
            metrics = loaded.trainer().evaluate(loaded.user_loader())
    except RechubError as exc:
        _fail(exc)
        return
    _common.console.print(
        _metrics_table(f"{loaded.config.model.name} (test)", {"model": metrics}, METRIC_KEYS)
    )


def export(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN/onnx).")] = None,
) -> None:
    """Export both towers to ONNX (checked against PyTorch with onnxruntime)."""
    from rechub_core.io import check_output_dir
    from rechub_core.run_folder import RunLock, check_complete
    from rechub_core.runs import load_run

    try:
        target = out or (run / "onnx")
        if out is not None:  # RUN/onnx is checked with the run itself
            check_output_dir(out, "export --out")
        check_complete(run)  # before the lock: a wrong path creates no RUN.lock beside it
        with RunLock(run):  # a writer: no train may commit over RUN meanwhile
            loaded = load_run(run)
            trainer = loaded.trainer()
            for side in ("user", "item"):
                example = loaded.example(side)
                path = trainer.export_onnx(
                    target / f"{side}_tower.onnx", mode=side, example=example, verify=False
                )
                _common.console.print(_parity_line(trainer.model, path, side, example))
    except RechubError as exc:
        _fail(exc)


def recall(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    user: Annotated[str | None, typer.Option(help="One raw user id.")] = None,
    users: Annotated[str | None, typer.Option(help="'all' for every user.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Items per user.")] = 20,
    output: Annotated[
        Path | None, typer.Option(help="Write user_id,rank,item_id,score CSV.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing --output file.")] = False,
) -> None:
    """Top-K items for a user (or all users), seen items excluded."""
    from rechub_core.io import check_output_file, write_text
    from rechub_core.runs import load_run
    from rechub_core.runs import recall as do_recall

    if (user is None) == (users is None) or (users is not None and users != "all"):
        _fail(RechubError("pass exactly one of --user RAW_ID or --users all"))
    try:
        if k <= 0:
            raise RechubError(f"-k must be at least 1, got {k}")
        if output is not None:
            check_output_file(output, "--output", force)
        loaded = load_run(run)
        raw: list[Any] | None = None
        if user is not None:
            raw = [loaded.encoders["user_id"].parse(user)]
        frame = do_recall(loaded, raw, k)
        if output is not None:
            cols = ["user_id", "rank", "item_id", "score"]
            write_text(output, frame[cols].to_csv(index=False))
    except RechubError as exc:
        _fail(exc)
        return
    if output is not None:
        _common.console.print(
            f"wrote {len(frame)} rows for {frame['user_id'].nunique()} users to {output}"
        )
        return
    table = Table(title=f"top {k} for user {user}")
    for col in frame.columns:
        if col != "user_id":
            table.add_column(col)
    for row in frame.itertuples(index=False):
        d = row._asdict()
        d.pop("user_id")
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in d.values()))
    _common.console.print(table)


def register(app: typer.Typer) -> None:
    """Add the run-folder commands to ``app``."""
    app.command()(evaluate)
    app.command()(export)
    app.command()(recall)
