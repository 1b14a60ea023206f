"""Run configs (TOML/JSON, readable errors) and the ``rechub`` command line (CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from typer.testing import CliRunner

from rechub_core import __version__, plugins
from rechub_core.cli import make_app
from rechub_core.config import (
    ComponentConfig,
    DataConfig,
    RunConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from rechub_core.errors import ConfigError

pytest_plugins = ["plugin_fixtures"]  # fixtures: global_host, wide_console

LOSSES = ["bce", "bpr", "hinge", "sampled_softmax", "softmax"]

# --- config -------------------------------------------------------------------------------------


def sample_config() -> RunConfig:
    return RunConfig(
        model=ComponentConfig("YoutubeDNN", {"embed_dim": 32, "dims": [64, 32]}),
        data=DataConfig(source="movielens-100k", max_len=20, download=True),
        train=TrainConfig(mode=1, epochs=3, lr=0.01, weight_decay=0.0, device="cpu"),
        loss=ComponentConfig("bpr"),
        sampler=ComponentConfig("popularity", {"alpha": 0.75, "n_neg": 8}),
    )


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_round_trip(tmp_path: Path, suffix: str):
    cfg = sample_config()
    path = tmp_path / f"run{suffix}"
    save_config(cfg, path)
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        assert json.loads(text)["model"] == {
            "name": "YoutubeDNN",
            "params": {"embed_dim": 32, "dims": [64, 32]},
        }
    else:
        assert "[model]" in text and 'name = "YoutubeDNN"' in text
    loaded = load_config(path)
    assert loaded == cfg
    assert loaded.train.lr == 0.01
    assert loaded.index == ComponentConfig("faiss", {"kind": "flat"})
    # None ("use the model's default") is left out of the file and comes back as None
    assert "patience" not in config_to_dict(cfg)["train"]
    assert loaded.train.patience is None


def test_config_overrides_with_evolve(tmp_path: Path):
    cfg = attrs.evolve(sample_config(), train=TrainConfig(lr=0.5))
    save_config(cfg, tmp_path / "run.toml")
    assert load_config(tmp_path / "run.toml").train.lr == 0.5


def test_train_section_lays_every_setting_over_the_model_defaults(tmp_path: Path):
    """[train] fields named like TrainSettings' override the model's defaults, including the
    sequence batch and the learning-rate decay; unset ones keep the model's values."""
    from rechub_core.errors import InputError
    from rechub_core.runs import effective_settings

    spec = plugins.get_spec("model", "SASRec")
    path = write(
        tmp_path,
        '[model]\nname = "SASRec"\n[train]\nsequence_batch_size = 64\nlr_decay = 0.5\n'
        "ema_epochs = 0\n",
    )
    settings = effective_settings(load_config(path), spec)
    assert (settings.sequence_batch_size, settings.lr_decay, settings.ema_epochs) == (64, 0.5, 0)
    assert settings.lr == spec.train_defaults.lr
    default = effective_settings(RunConfig(model=ComponentConfig("SASRec")), spec)
    assert default.sequence_batch_size == spec.train_defaults.sequence_batch_size
    assert default.lr_decay == 1.0
    assert default.ema_epochs == spec.train_defaults.ema_epochs
    too_big = RunConfig(model=ComponentConfig("SASRec"), train=TrainConfig(lr_decay=2.0))
    with pytest.raises(InputError, match="lr_decay must lie in"):
        effective_settings(too_big, spec)


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_names_its_path(tmp_path: Path):
    path = write(tmp_path, '[model]\nname = "DSSM"\n\n[train]\nlrr = 0.1\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"invalid {path}:")
    assert "extra fields found (lrr) @ $.train" in message


def test_unknown_key_in_json(tmp_path: Path):
    path = write(tmp_path, json.dumps({"model": {"name": "DSSM", "parms": {}}}), "run.json")
    with pytest.raises(ConfigError, match=r"extra fields found \(parms\) @ \$\.model"):
        load_config(path)


def test_wrong_type_names_its_path(tmp_path: Path):
    path = write(tmp_path, '[model]\nname = "DSSM"\n\n[train]\nlr = "fast"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "expected float" in str(err.value)
    assert str(err.value).rstrip().endswith("@ $.train.lr")


def test_every_problem_is_listed():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"train": {"lr": "x", "epochs": "y"}}, where="cfg")
    message = str(err.value)
    assert "required field missing @ $.model" in message
    assert "@ $.train.lr" in message
    assert "@ $.train.epochs" in message


def test_out_of_range_value_says_which_field_and_why():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"model": {"name": "DSSM"}, "train": {"lr": -1.0}})
    assert "lr must be > 0, got -1.0" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config_from_dict({"model": {"name": "DSSM"}, "train": {"logits_dtype": "float16"}})
    assert "logits_dtype must be one of 'auto', 'float32', 'bfloat16', got 'float16'" in str(
        err.value
    )


def test_missing_and_unparsable_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(write(tmp_path, "[model\nname = 1\n"))
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(write(tmp_path, "{not json", "run.json"))


def test_validators_reject_bad_values():
    with pytest.raises(ValueError, match="mode must be 0, 1 or 2, got 3"):
        TrainConfig(mode=3)
    with pytest.raises(ValueError, match="max_len must be > 0, got 0"):
        DataConfig(max_len=0)


# --- command line ---------------------------------------------------------------------------------


@pytest.fixture
def runner(global_host, wide_console) -> CliRunner:
    return CliRunner()


def test_version(runner: CliRunner):
    result = runner.invoke(make_app(), ["--version"])
    assert result.exit_code == 0
    assert result.output == f"rechub {__version__}\n"


def test_list_plugins_table_shows_dssm(runner: CliRunner, monkeypatch):
    monkeypatch.setenv(plugins.ENV_PLUGINS, "dssm")
    result = runner.invoke(make_app(), ["list-plugins"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "rechub-plugins-dssm" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells == [
        "dssm",
        "rechub-plugins-dssm",
        "0.1.0",
        "ok",
        "model: DSSM, FaceBookDSSM, YoutubeDNN, YoutubeSBC",
    ]
    assert "rechub.builtins" not in result.output


def test_list_plugins_json_has_the_same_plugins(runner: CliRunner):
    app = make_app()
    table = runner.invoke(app, ["list-plugins"]).output
    result = runner.invoke(app, ["list-plugins", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    names = [r["name"] for r in rows]
    assert names == [i.name for i in plugins.iter_plugins()]
    assert all(f"│ {name} " in table for name in names)
    dssm = next(r for r in rows if r["name"] == "dssm")
    assert dssm["status"] == "ok"
    assert dssm["error"] is None
    assert dssm["distribution"] == "rechub-plugins-dssm"
    assert dssm["components"] == {"model": ["DSSM", "FaceBookDSSM", "YoutubeDNN", "YoutubeSBC"]}
    assert dssm["hooks"] == ["rechub_register_models"]
    assert not any(r["builtin"] for r in rows)


def test_list_plugins_all_adds_builtins(runner: CliRunner, monkeypatch):
    monkeypatch.setenv(plugins.ENV_PLUGINS, "dssm")
    app = make_app()
    listed = runner.invoke(app, ["list-plugins", "--all", "--json"])
    rows = json.loads(listed.stdout)  # what RECHUB_PLUGINS left out is a note on stderr
    assert "RECHUB_PLUGINS=dssm left out" in listed.stderr
    assert [r["name"] for r in rows] == [plugins.BUILTIN_PLUGIN_NAME, "dssm"]
    core = rows[0]
    assert core["builtin"] is True
    assert core["distribution"] == "rechub"
    assert core["components"]["loss"] == LOSSES
    assert core["components"]["index"] == ["exact", "faiss"]
    table = runner.invoke(app, ["list-plugins", "--all"]).output
    assert plugins.BUILTIN_PLUGIN_NAME in table
    assert "loss: bce, bpr, hinge, sampled_softmax, softmax" in table


def test_list_plugins_when_none_load(runner: CliRunner, monkeypatch):
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    plugins.reset_host()
    app = make_app()
    result = runner.invoke(app, ["list-plugins"])
    assert result.exit_code == 0
    said = " ".join(result.output.split())
    # installed but switched off: say so, and how to switch them on (not "No plugins installed.")
    assert said.startswith("No plugins loaded. note: RECHUB_DISABLE_PLUGIN_AUTOLOAD is set")
    assert "unset it to load them" in said
    assert json.loads(runner.invoke(app, ["list-plugins", "--json"]).stdout) == []


def test_list_components_loss(runner: CliRunner, monkeypatch):
    monkeypatch.setenv(plugins.ENV_DISABLE_AUTOLOAD, "1")
    app = make_app()
    result = runner.invoke(app, ["list-components", "loss"])
    assert result.exit_code == 0
    assert "│ loss │ bce, bpr, hinge, sampled_softmax, softmax │" in result.output
    as_json = json.loads(runner.invoke(app, ["list-components", "loss", "--json"]).output)
    assert as_json == {"loss": LOSSES}
    glob = runner.invoke(app, ["list-components", "loss", "--pattern", "*softmax", "--json"])
    assert json.loads(glob.output) == {"loss": ["sampled_softmax", "softmax"]}
    everything = json.loads(runner.invoke(app, ["list-components", "--json"]).output)
    assert list(everything) == ["tower", "encoder", "loss", "sampler", "index", "model"]
    assert everything["model"] == []


def test_list_components_unknown_kind(runner: CliRunner):
    result = runner.invoke(make_app(), ["list-components", "widget"])
    assert result.exit_code == 1
    assert "unknown component kind 'widget'; kinds are: tower, encoder" in result.output
    assert "Traceback" not in result.output


def test_train_with_unknown_config_key_fails_readably(runner: CliRunner, tmp_path: Path):
    path = write(tmp_path, '[model]\nname = "DSSM"\n\n[train]\nlrr = 0.1\n')
    result = runner.invoke(make_app(), ["train", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error: invalid" in result.output
    assert "extra fields found (lrr) @ $.train" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_train_without_a_model_says_what_to_pass(runner: CliRunner, tmp_path: Path):
    result = runner.invoke(make_app(), ["train", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "pass --model NAME or a config file with [model]" in result.output
