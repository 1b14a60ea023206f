"""The ``rechub`` command line (typer), built in :func:`make_app` so that nothing runs at import.

Plugins add commands through the ``rechub_register_commands(app)`` hook. ``python -m
rechub_core.cli`` runs it too, which is how ``torchrun`` starts data-parallel workers:
``torchrun --nproc-per-node 2 -m rechub_core.cli train ...`` (or ``rechub train --nproc 2``).
"""

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rechub_core.errors import RechubError

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


def _list_plugins(all_: bool, as_json: bool) -> None:
    from rechub_core.plugins import iter_plugins

    infos = list(iter_plugins(include_builtins=all_))
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
        return
    if not infos:
        console.print("No plugins installed.")
        return
    table = Table(title="rechub plugins")
    for col in ("plugin", "package", "version", "status", "registers"):
        table.add_column(col)
    for i in infos:
        registers = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(i.components.items()))
        status = (
            "[green]ok[/]" if i.status == "ok" else f"[red]{i.status}[/]: {escape(i.error or '')}"
        )
        table.add_row(i.name, i.distribution, i.version, status, registers or "-")
    console.print(table)


def _configure_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # it logs which SIMD build it loaded


def _build_config(
    config: Path | None, overrides: dict[str, dict[str, Any]], model: str | None
) -> Any:
    from rechub_core.config import config_from_dict, config_to_dict, load_config

    base = config_to_dict(load_config(config)) if config else {}
    for section, values in overrides.items():
        for key, value in values.items():
            if value is not None:
                base.setdefault(section, {})[key] = value
    if model:
        base["model"] = {"name": model, "params": base.get("model", {}).get("params", {})}
    if "model" not in base:
        raise RechubError("no model given: pass --model NAME or a config file with [model]")
    return config_from_dict(base, where=str(config) if config else "command line")


def _train_config(
    config: Path | None,
    overrides: dict[str, dict[str, Any]],
    model: str | None,
    out: Path,
    resume: bool,
) -> Any:
    """The run config of ``rechub train``; ``--resume`` without a config or a model reuses
    the ``config.toml`` the interrupted run wrote into its folder."""
    if resume and config is None and model is None and (out / "config.toml").is_file():
        config = out / "config.toml"
    return _build_config(config, overrides, model)


def _print_result(model: str, source: str, metrics: Any, mostpop: Any, out: Path) -> None:
    console.print(
        _metrics_table(
            f"{model} on {source} (test, full ranking)",
            {model: metrics, "MostPop": mostpop},
            METRIC_KEYS,
        )
    )
    console.print(f"run folder: {out}")


def _launch_workers(cfg: Any, out: Path, nproc: int, resume: bool, quiet: bool) -> None:
    """``rechub train --nproc N``: write the config into the run folder and start torchrun
    with N copies of ``rechub train CONFIG --out OUT`` (rank 0 prints the results)."""
    from rechub_core import distributed
    from rechub_core.config import save_config
    from rechub_core.io import ensure_writable_dir

    ensure_writable_dir(out, "run folder")
    config_path = out / "config.toml"
    save_config(cfg, config_path)
    args = ["train", str(config_path), "--out", str(out)]
    args += ["--resume"] * resume + ["--quiet"] * quiet
    if distributed.launch(nproc, args) != 0:
        raise RechubError(
            "data-parallel training failed; the ranks' errors are printed above. Resume it "
            f"from its last checkpoint with: rechub train --resume --nproc {nproc} --out {out}"
        )


def _version_callback(value: bool) -> None:
    if value:
        from rechub_core import __version__

        typer.echo(f"rechub {__version__}")
        raise typer.Exit()


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

    @app.command("list-plugins")
    def list_plugins(
        all_: Annotated[
            bool, typer.Option("--all", help="Also show the core's built-ins.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Installed plugins: package, version, status and what each registers."""
        _list_plugins(all_, as_json)

    @app.command("list-components")
    def list_components_cmd(
        kind: Annotated[
            str | None, typer.Argument(help="tower, encoder, loss, sampler, index or model")
        ] = None,
        pattern: Annotated[
            str | None, typer.Option(help="Glob on names, e.g. '*softmax*'.")
        ] = None,
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
        table = Table(title="rechub components")
        table.add_column("kind")
        table.add_column("names")
        for k, names in found.items():
            table.add_row(k, ", ".join(names) or "-")
        console.print(table)

    @app.command()
    def train(
        config: Annotated[
            Path | None, typer.Argument(help="A TOML/JSON run config (optional).")
        ] = None,
        model: Annotated[str | None, typer.Option(help="Registered model name, e.g. DSSM.")] = None,
        data: Annotated[
            str | None, typer.Option(help="synthetic | movielens-100k | PATH to a CSV/parquet log.")
        ] = None,
        data_dir: Annotated[str | None, typer.Option(help="Folder of MovieLens-100K.")] = None,
        download: Annotated[
            bool | None, typer.Option(help="Fetch MovieLens-100K if absent.")
        ] = None,
        epochs: Annotated[
            int | None, typer.Option(help="Epochs (default: to early stopping).")
        ] = None,
        seed: Annotated[int | None, typer.Option(help="Training seed.")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
        lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
        device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
        max_len: Annotated[int | None, typer.Option(help="History length.")] = None,
        user_col: Annotated[str | None, typer.Option(help="User column of a log file.")] = None,
        item_col: Annotated[str | None, typer.Option(help="Item column of a log file.")] = None,
        time_col: Annotated[str | None, typer.Option(help="Time column of a log file.")] = None,
        out: Annotated[Path, typer.Option(help="Run folder to write.")] = Path("runs/latest"),
        quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
        resume: Annotated[
            bool,
            typer.Option(
                help="Continue a killed run from OUT/checkpoint.pt (config: OUT/config.toml "
                "unless given)."
            ),
        ] = False,
        nproc: Annotated[
            int | None,
            typer.Option(
                help="Train data-parallel in NPROC processes on this machine (starts torchrun; "
                "gloo on CPU, NCCL on CUDA)."
            ),
        ] = None,
        gather_negatives: Annotated[
            bool | None,
            typer.Option(
                help="Data-parallel with an in-batch sampler: use every rank's positives as "
                "negatives (all-gather)."
            ),
        ] = None,
    ) -> None:
        """Train a model; writes a run folder (config, encoders, weights, metrics, curve, index)."""
        from rechub_core import distributed
        from rechub_core.runs import train_run

        _configure_logging(not quiet)
        try:
            cfg = _train_config(
                config,
                {
                    "data": {
                        "source": data,
                        "data_dir": data_dir,
                        "download": download,
                        "max_len": max_len,
                        "user_col": user_col,
                        "item_col": item_col,
                        "time_col": time_col,
                    },
                    "train": {
                        "epochs": epochs,
                        "seed": seed,
                        "batch_size": batch_size,
                        "lr": lr,
                        "device": device,
                        "gather_negatives": gather_negatives,
                    },
                },
                model,
                out,
                resume,
            )
            if nproc is not None and nproc > 1 and distributed.env_world_size() <= 1:
                _launch_workers(cfg, out, nproc, resume, quiet)
                return
            ctx, _ = distributed.setup(cfg.train.device)
            result = train_run(cfg, out, verbose=not quiet, resume=resume)
        except RechubError as exc:
            _fail(exc)
            return
        finally:
            distributed.shutdown()
        if ctx.is_main:
            _print_result(cfg.model.name, cfg.data.source, result.metrics, result.mostpop, out)

    @app.command()
    def evaluate(run: Annotated[Path, typer.Argument(help="Run folder.")]) -> None:
        """Recompute test metrics of a run folder."""
        from rechub_core.runs import load_run

        try:
            loaded = load_run(run)
            metrics = loaded.trainer().evaluate(loaded.user_loader())
        except RechubError as exc:
            _fail(exc)
            return
        console.print(
            _metrics_table(f"{loaded.config.model.name} (test)", {"model": metrics}, METRIC_KEYS)
        )

    @app.command()
    def export(
        run: Annotated[Path, typer.Argument(help="Run folder.")],
        out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN/onnx).")] = None,
    ) -> None:
        """Export both towers to ONNX (checked against PyTorch with onnxruntime)."""
        from rechub_core.runs import load_run

        try:
            loaded = load_run(run)
            trainer = loaded.trainer()
            target = out or (run / "onnx")
            for side in ("user", "item"):
                path = trainer.export_onnx(
                    target / f"{side}_tower.onnx", mode=side, example=loaded.example(side)
                )
                console.print(f"{side} tower: {path}")
        except RechubError as exc:
            _fail(exc)

    @app.command()
    def recall(
        run: Annotated[Path, typer.Argument(help="Run folder.")],
        user: Annotated[str | None, typer.Option(help="One raw user id.")] = None,
        users: Annotated[str | None, typer.Option(help="'all' for every user.")] = None,
        k: Annotated[int, typer.Option("-k", "--k", help="Items per user.")] = 20,
        output: Annotated[
            Path | None, typer.Option(help="Write user_id,rank,item_id,score CSV.")
        ] = None,
    ) -> None:
        """Top-K items for a user (or all users), seen items excluded."""
        from rechub_core.io import write_text
        from rechub_core.runs import load_run
        from rechub_core.runs import recall as do_recall

        if (user is None) == (users is None) or (users is not None and users != "all"):
            _fail(RechubError("pass exactly one of --user RAW_ID or --users all"))
        try:
            loaded = load_run(run)
            raw: list[Any] | None = None
            if user is not None:
                enc = loaded.encoders["user_id"]
                raw = [_coerce_raw_id(user, enc.classes)]
            frame = do_recall(loaded, raw, k)
        except RechubError as exc:
            _fail(exc)
            return
        if output is not None:
            cols = ["user_id", "rank", "item_id", "score"]
            write_text(output, frame[cols].to_csv(index=False))
            console.print(
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
        console.print(table)

    @app.command()
    def demo(
        model: Annotated[
            str | None,
            typer.Option(
                help="Model to train (default: the first installed of SASRec, YoutubeDNN, DSSM)."
            ),
        ] = None,
        epochs: Annotated[
            int | None, typer.Option(help="Epochs (default: the model's demo budget).")
        ] = None,
        out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/demo"),
    ) -> None:
        """Train on the built-in synthetic data; print metrics next to MostPop and a few users'
        recommendations."""
        from rechub_core.config import ComponentConfig, DataConfig, RunConfig, TrainConfig
        from rechub_core.plugins import list_components
        from rechub_core.runs import load_run, train_run
        from rechub_core.runs import recall as do_recall

        _configure_logging(True)
        try:
            available = {n.lower(): n for n in list_components("model")}
            name = model or next(
                (available[n] for n in ("sasrec", "youtubednn", "dssm") if n in available), None
            )
            if name is None:
                raise RechubError(
                    "no model plugin is installed; install one, e.g. "
                    "`pip install -e plugins/rechub_plugins_dssm`"
                )
            cfg = RunConfig(
                model=ComponentConfig(name),
                data=DataConfig(source="synthetic"),
                train=TrainConfig(epochs=epochs or 8),
            )
            start = time.perf_counter()
            result = train_run(cfg, out, verbose=True)
            seconds = time.perf_counter() - start
            console.print(
                _metrics_table(
                    f"{name} on synthetic data (test, full ranking; trained in {seconds:.0f}s)",
                    {name: result.metrics, "MostPop": result.mostpop},
                    METRIC_KEYS,
                )
            )
            loaded = load_run(out)
            first = loaded.encoders["user_id"].inverse(
                loaded.users["inputs"]["user_id"][:3].numpy()
            )
            frame = do_recall(loaded, list(first), 5)
        except RechubError as exc:
            _fail(exc)
            return
        for uid, group in frame.groupby("user_id", sort=False):
            console.print(f"user {uid}: " + ", ".join(str(i) for i in group["item_id"]))
        console.print(f"run folder: {out}  (try: rechub recall {out} --user {first[0]} -k 10)")

    from rechub_core.plugins import get_host

    get_host().call_register_commands(app)
    return app


def _coerce_raw_id(text: str, classes: Any) -> Any:
    """Raw ids of a run may be ints or strings; match the type the encoder holds."""
    sample = next(iter(classes), None)
    if isinstance(sample, int | np.integer) and not isinstance(sample, bool):
        try:
            return int(text)
        except ValueError:
            raise RechubError(f"user ids of this run are integers; got {text!r}") from None
    return text


def main() -> None:
    """Console-script entry point."""
    app = make_app()
    app(prog_name="rechub")


if __name__ == "__main__":
    main()
    sys.exit(0)
