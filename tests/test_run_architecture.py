"""A run folder records the model it trained (every constructor argument, defaults included),
and loading or resuming it with code that would build another model is refused with the
argument named, instead of loading the weights into a model with other settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from test_run_integrity import TINY  # the same tiny DSSM run

from rechub_core.architecture import describe, differences
from rechub_core.config import config_from_dict
from rechub_core.errors import CheckpointError
from rechub_core.plugins import get_spec
from rechub_core.preprocess import prepare
from rechub_core.runs import ARCHITECTURE_FILE, build_model, load_run, train_run
from rechub_core.schema import DataSchema
from rechub_core.synthetic import synthetic_interactions
from rechub_plugins_dssm.dssm import DSSM


def _schema() -> DataSchema:
    return DataSchema.from_prepared(prepare(synthetic_interactions(50, 30, seed=0), 10, 5))


def test_describe_records_defaults_of_the_model_and_every_tower() -> None:
    model = build_model(get_spec("model", "SASRec"), _schema(), {"num_heads": 2})
    arch = describe(model)
    assert arch[""]["class"] == "SASRec"
    assert arch[""]["args"]["temperature"] == 1.0 and arch[""]["args"]["normalize"] is False
    encoder = arch["user_tower"]
    assert encoder["class"] == "SASRecEncoder"
    # the given value and the defaults the user never wrote, as the encoder received them
    assert encoder["args"]["num_heads"] == 2
    assert encoder["args"]["hidden_size"] == 256 and encoder["args"]["dropout"] == 0.3
    # feature definitions are described field by field (a changed table width shows)
    item = arch["item_tower"]["args"]["item_feature"]
    assert item["type"] == "SparseFeature" and item["embed_dim"] == 128
    assert json.loads(json.dumps(arch)) == arch  # plain data
    assert differences(arch, arch) == []
    other = describe(build_model(get_spec("model", "SASRec"), _schema(), {"num_heads": 4}))
    # the model passed it on to its encoder: both name it
    assert differences(arch, other) == [
        "the model (SASRec) num_heads: trained with 2, built now 4",
        "'user_tower' (SASRecEncoder) num_heads: trained with 2, built now 4",
    ]


def _train(tmp_path: Path) -> Path:
    torch.set_num_threads(1)
    run = tmp_path / "run"
    train_run(config_from_dict(TINY), run, verbose=False)
    return run


def test_a_changed_default_is_refused_with_the_argument_named_and_the_fix_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _train(tmp_path)
    written = json.loads((run / ARCHITECTURE_FILE).read_text())
    assert written == describe(load_run(run).model)
    assert written[""]["args"]["temperature"] == 0.05
    # a new plugin release changes DSSM's default temperature: every shape stays the same,
    # so without the record the old weights would load silently into another model
    init = DSSM.__init__.__wrapped__  # type: ignore[attr-defined]
    defaults = list(init.__defaults__)
    defaults[0] = 0.1
    monkeypatch.setattr(init, "__defaults__", tuple(defaults))
    with pytest.raises(CheckpointError) as err:
        load_run(run)
    msg = str(err.value)
    assert "temperature: trained with 0.05, built now 0.1" in msg
    assert "[model.params]" in msg and os.fspath(run / "config.toml") in msg
    # the fix the message names: give the trained value in the run's config
    cfg = (run / "config.toml").read_text()
    (run / "config.toml").write_text(
        cfg.replace("[model.params]\n", "[model.params]\ntemperature = 0.05\n")
    )
    assert load_run(run).model.temperature == 0.05


def test_resume_refuses_a_checkpoint_of_another_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _train(tmp_path)
    staging = run.with_name(run.name + ".staging")
    os.rename(run, staging)  # as a killed first train leaves it (config, architecture, ...)
    (staging / "run.json").unlink()
    arch = json.loads((staging / ARCHITECTURE_FILE).read_text())
    arch["user_tower"]["args"]["dims"] = [32]  # the trained tower was another width
    (staging / ARCHITECTURE_FILE).write_text(json.dumps(arch))
    with pytest.raises(
        CheckpointError, match=r"cannot resume .*dims: trained with \[32\], built now \[16\]"
    ):
        train_run(config_from_dict(TINY), run, verbose=False, resume=True)
    assert (staging / "checkpoint.pt").is_file()  # left for the user to decide


def test_folders_written_before_the_record_still_load(tmp_path: Path) -> None:
    run = _train(tmp_path)
    (run / ARCHITECTURE_FILE).unlink()
    assert load_run(run).model.temperature == 0.05
