"""``rechub train`` and ``rechub demo``."""

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rechub_core.cli import _common
from rechub_core.cli._common import METRIC_KEYS, _configure_logging, _fail, _metrics_table
from rechub_core.errors import RechubError


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
    the ``config.toml`` the interrupted run wrote into ``OUT.staging`` (else the committed
    run's)."""
    from rechub_core.run_folder import staging_path

    if resume and config is None and model is None:
        for folder in (staging_path(out), out):
            if (folder / "config.toml").is_file():
                config = folder / "config.toml"
                break
    return _build_config(config, overrides, model)


def _with_index(cfg: Any, index: str | None) -> Any:
    """``cfg`` building the item index ``--index`` names (checked against the registry; the
    config's params are kept only when it names the same index)."""
    import attrs

    from rechub_core.config import ComponentConfig
    from rechub_core.plugins import get_spec
    from rechub_core.specs import normalize_name

    if index is None:
        return cfg
    get_spec("index", index)  # an unknown name fails now, listing the installed indexes
    same = normalize_name(cfg.index.name) == normalize_name(index)
    return attrs.evolve(cfg, index=ComponentConfig(index, dict(cfg.index.params) if same else {}))


def _print_result(model: str, source: str, metrics: Any, mostpop: Any, out: Path) -> None:
    _common.console.print(
        _metrics_table(
            f"{model} on {source} (test, full ranking)",
            {model: metrics, "MostPop": mostpop},
            METRIC_KEYS,
        )
    )
    _common.console.print(f"run folder: {out}")


def _launch_workers(
    cfg: Any, out: Path, nproc: int, resume: bool, quiet: bool, force: bool
) -> None:
    """``rechub train --nproc N``: check the config, write it to a temporary file beside the
    run folder (never into it: the run is written through OUT.staging) and start torchrun with
    N copies of ``rechub train CONFIG --out OUT`` (rank 0 locks, commits, prints)."""
    from rechub_core import distributed
    from rechub_core.checks import check_run_config
    from rechub_core.config import save_config
    from rechub_core.io import check_output_dir
    from rechub_core.run_folder import RunLock, check_target

    check_run_config(cfg)
    check_output_dir(out, "run folder --out")
    check_target(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    with RunLock(out):  # another writer now: say so here, not from inside two ranks
        pass
    config_path = out.with_name(f".{out.name}.launch-{os.getpid()}.toml")
    save_config(cfg, config_path)
    args = ["train", str(config_path), "--out", str(out)]
    args += ["--resume"] * resume + ["--quiet"] * quiet + ["--force"] * force
    try:
        failed = distributed.launch(nproc, args) != 0
    finally:
        config_path.unlink(missing_ok=True)
    if failed:
        raise RechubError(
            "data-parallel training failed; the ranks' errors are printed above. Resume it "
            f"from its last checkpoint with: rechub train --resume --nproc {nproc} --out {out}"
        )


#: the demo's default budget, and what it costs: SASRec (the default model) on the synthetic
#: data, seconds per epoch with validation on a 2-core CPU with no other job (measured
#: 2026-12-02 at load 0.9: trained in 20 s, 1.5 s a training epoch, the whole `rechub demo`
#: 23-24 s over three runs; 11 s / 14 s with the width-64 SASRec of before 717efd0)
DEMO_EPOCHS = 8
DEMO_SECONDS_PER_EPOCH = 2.5


def _demo_expectation(name: str, epochs: int) -> str:
    """What the demo is about to do, how long that should take and on how many threads."""
    from rechub_core.threads import pick_threads

    threads, reason = pick_threads()  # the rule train uses for threads="auto"
    expected = DEMO_SECONDS_PER_EPOCH * epochs
    other = "" if name.lower() == "sasrec" else " for SASRec; other models differ"
    return (
        f"demo: training {name} on synthetic data for {epochs} epochs with {threads} "
        f"thread(s) ({reason}; set OMP_NUM_THREADS to choose); expected about "
        f"{expected:.0f} s on an idle 2-core CPU{other}, longer when other jobs share the CPU"
    )


def train(
    config: Annotated[
        Path | None, typer.Argument(help="A TOML/JSON run config (optional).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Registered model name, e.g. DSSM.")] = None,
    index: Annotated[
        str | None,
        typer.Option(
            help="Item index to build: exact, faiss or a plugin's (annoy, ...); its params "
            "come from the config's [index] when it names the same index."
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="synthetic | movielens-100k | PATH to a CSV/parquet log | PATH.txt with "
            "one line per user: 'user item item ...' in time order."
        ),
    ] = None,
    data_dir: Annotated[str | None, typer.Option(help="Folder of MovieLens-100K.")] = None,
    download: Annotated[bool | None, typer.Option(help="Fetch MovieLens-100K if absent.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: to early stopping).")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    max_len: Annotated[int | None, typer.Option(help="History length.")] = None,
    user_col: Annotated[str | None, typer.Option(help="User column of a log file.")] = None,
    item_col: Annotated[str | None, typer.Option(help="Item column of a log file.")] = None,
    time_col: Annotated[str | None, typer.Option(help="Time column of a log file.")] = None,
    min_interactions: Annotated[
        int | None,
        typer.Option(help="Drop users with fewer interactions (at least 3; default 5)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Run folder to write.")] = Path("runs/latest"),
    force: Annotated[
        bool,
        typer.Option(
            help="Replace an --out folder that is not a rechub run (its files are moved "
            "to OUT.replaced-TIME)."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress output.")] = False,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue a killed run from its checkpoint in OUT.staging (config: "
            "OUT.staging/config.toml unless given)."
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
    threads: Annotated[
        int | None,
        typer.Option(
            help="Intra-op threads per process (default: the cores this process may use "
            "minus the machine's load; the choice is logged)."
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
                    "min_interactions": min_interactions,
                },
                "train": {
                    "epochs": epochs,
                    "seed": seed,
                    "batch_size": batch_size,
                    "lr": lr,
                    "device": device,
                    "gather_negatives": gather_negatives,
                    "threads": threads,
                },
            },
            model,
            out,
            resume,
        )
        cfg = _with_index(cfg, index)
        if nproc is not None and nproc > 1 and distributed.env_world_size() <= 1:
            _launch_workers(cfg, out, nproc, resume, quiet, force)
            return
        ctx, _ = distributed.setup(cfg.train.device)
        result = train_run(cfg, out, verbose=not quiet, resume=resume, force=force)
    except RechubError as exc:
        _fail(exc)
        return
    finally:
        distributed.shutdown()
    if ctx.is_main:
        _print_result(cfg.model.name, cfg.data.source, result.metrics, result.mostpop, out)


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
        if epochs is not None and epochs < 1:
            raise RechubError(f"--epochs must be at least 1, got {epochs}; pass --epochs 1 or more")
        cfg = RunConfig(
            model=ComponentConfig(name),
            data=DataConfig(source="synthetic"),
            train=TrainConfig(epochs=epochs or DEMO_EPOCHS),
        )
        _common.console.print(_demo_expectation(name, epochs or DEMO_EPOCHS), highlight=False)
        start = time.perf_counter()
        result = train_run(cfg, out, verbose=True)
        seconds = time.perf_counter() - start
        _common.console.print(
            _metrics_table(
                f"{name} on synthetic data (test, full ranking; trained in {seconds:.0f}s)",
                {name: result.metrics, "MostPop": result.mostpop},
                METRIC_KEYS,
            )
        )
        loaded = load_run(out)
        first = loaded.encoders["user_id"].inverse(loaded.users["inputs"]["user_id"][:3].numpy())
        frame = do_recall(loaded, list(first), 5)
    except RechubError as exc:
        _fail(exc)
        return
    for uid, group in frame.groupby("user_id", sort=False):
        _common.console.print(f"user {uid}: " + ", ".join(str(i) for i in group["item_id"]))
    _common.console.print(
        f"run folder: {out}  (try: {_common.invoked_as()} recall {out} --user {first[0]} -k 10)"
    )


def register(app: typer.Typer) -> None:
    """Add the training commands to ``app``."""
    app.command()(train)
    app.command()(demo)
