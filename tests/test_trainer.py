"""The model-agnostic training path: fit, early stopping, checkpoints, resume, evaluation,
inference, ONNX export, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rechub_core.data import BatchLoader, MatchDataGenerator, loaders_from_prepared
from rechub_core.errors import CheckpointError, InputError, RechubError
from rechub_core.features import DenseFeature, SequenceFeature, SparseFeature
from rechub_core.io import load_torch
from rechub_core.metrics import most_popular_metrics
from rechub_core.preprocess import PreparedData
from rechub_core.schema import DataSchema
from rechub_core.towers import ItemEmbeddingTower, MLPTower, TwoTowerModel
from rechub_core.trainer import MatchTrainer, load_weights


def small_model(data: PreparedData, dim: int = 16, seed: int = 0) -> TwoTowerModel:
    torch.manual_seed(seed)
    schema = DataSchema.from_prepared(data)
    user = MLPTower(schema.pooled_user(dim, user_id=True), dims=[32, dim])
    return TwoTowerModel(user, ItemEmbeddingTower(schema.item_id(dim)), temperature=0.1)


def trainer_for(model: TwoTowerModel, path: Path, **kw: object) -> MatchTrainer:
    params = {
        "mode": 2,
        "sampler": "full",
        "optimizer_params": {"lr": 5e-3},
        "n_epoch": 3,
        "earlystop_patience": 3,
        "model_path": path,
        "seed": 7,
        "verbose": False,
    }
    params.update(kw)
    return MatchTrainer(model, **params)  # type: ignore[arg-type]


def test_fit_learns_the_planted_structure_and_restores_best(
    synthetic: PreparedData, tmp_path: Path
) -> None:
    train, val, test = loaders_from_prepared(synthetic, batch_size=256)
    trainer = trainer_for(small_model(synthetic), tmp_path, n_epoch=3)
    history = trainer.fit(train, val)
    assert len(history) == 3
    assert all(np.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    best = max(h["val_ndcg@10"] for h in history)
    assert trainer.evaluate(val)["ndcg@10"] == pytest.approx(best, abs=1e-6)
    metrics = trainer.evaluate(test)
    assert set(metrics) >= {
        f"{m}@{k}" for m in ("recall", "precision", "ndcg", "hit", "mrr") for k in (10, 20, 50)
    }
    assert all(isinstance(v, float) for v in metrics.values())
    t = synthetic.test
    pop = most_popular_metrics(synthetic.item_counts, t.target, t.seen_indptr, t.seen_indices)
    assert metrics["ndcg@10"] > 2 * pop["ndcg@10"]
    assert (tmp_path / "model.pt").exists() and (tmp_path / "checkpoint.pt").exists()


def test_same_seed_same_metrics(synthetic: PreparedData, tmp_path: Path) -> None:
    results = []
    for run in ("a", "b"):
        train, val, _ = loaders_from_prepared(synthetic, batch_size=256, seed=1)
        trainer = trainer_for(small_model(synthetic, seed=3), tmp_path / run, n_epoch=2)
        trainer.fit(train, val)
        results.append(trainer.evaluate(val))
    assert results[0] == results[1]


def test_resume_after_epoch_two_equals_unbroken_run(
    synthetic: PreparedData, tmp_path: Path
) -> None:
    def run(path: Path, n_epoch: int, resume: bool = False, model_seed: int = 5) -> TwoTowerModel:
        train, val, _ = loaders_from_prepared(synthetic, batch_size=512, seed=2)
        model = small_model(synthetic, seed=model_seed)
        # dropout makes the global RNG matter: the trainer reseeds it per epoch
        trainer_for(model, path, n_epoch=n_epoch, sampler="uniform", earlystop_patience=10).fit(
            train, val, resume=resume
        )
        return model

    unbroken = run(tmp_path / "unbroken", 3)
    run(tmp_path / "broken", 2)
    # a different init proves the weights come from the checkpoint, not from the seed
    resumed = run(tmp_path / "broken", 3, resume=True, model_seed=99)
    ckpt = load_torch(tmp_path / "broken" / "checkpoint.pt")
    assert ckpt["epoch"] == 2
    for (name, a), b in zip(
        unbroken.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name


def test_checkpoint_of_another_model_is_rejected(synthetic: PreparedData, tmp_path: Path) -> None:
    train, val, _ = loaders_from_prepared(synthetic, batch_size=256)
    trainer = trainer_for(small_model(synthetic), tmp_path, n_epoch=1)
    trainer.fit(train, val)
    other = small_model(synthetic, dim=8)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(other, load_torch(tmp_path / "model.pt"), "model.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_torch(tmp_path / "junk.pt")


def test_inference_embedding_shapes_and_loading(synthetic: PreparedData, tmp_path: Path) -> None:
    train, val, test = loaders_from_prepared(synthetic, batch_size=256)
    model = small_model(synthetic)
    trainer = trainer_for(model, tmp_path, n_epoch=1)
    trainer.fit(train, val)
    users = trainer.inference_embedding(model, "user", test, model_path=tmp_path)
    assert users.shape == (len(synthetic.test.target), 16)
    items = trainer.inference_embedding(model, "item", BatchLoader(synthetic.items, 64))
    assert items.shape == (synthetic.n_items + 1, 16)
    with pytest.raises(InputError, match="mode"):
        trainer.inference_embedding(model, "both", test)


@pytest.mark.parametrize("side", ["user", "item"])
def test_onnx_export_parity(synthetic: PreparedData, tmp_path: Path, side: str) -> None:
    train, val, _ = loaders_from_prepared(synthetic, batch_size=256)
    model = small_model(synthetic)
    trainer = trainer_for(model, tmp_path, n_epoch=1)
    trainer.fit(train, val)
    path = trainer.export_onnx(tmp_path / f"{side}.onnx", mode=side)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    source = synthetic.test.users if side == "user" else synthetic.items
    names = model.user_feature_names if side == "user" else model.item_feature_names
    model.eval()
    for rows, seq_len in ((1, None), (37, None), (37, 7)):
        batch = {n: torch.as_tensor(source[n][1 : rows + 1]) for n in names}
        if seq_len is not None and "hist_item_id" in batch:
            batch["hist_item_id"] = batch["hist_item_id"][:, -seq_len:]
        (got,) = session.run(["vector"], {n: batch[n].numpy() for n in names})
        with torch.no_grad():
            want = model.encode_user(batch) if side == "user" else model.encode_item(batch)
        assert got.shape == tuple(want.shape)
        assert np.abs(got - want.numpy()).max() < 1e-4


# --- bad input --------------------------------------------------------------------------------


def tiny_features() -> tuple[list, list]:
    user = [
        SparseFeature("user_id", 5, 4),
        DenseFeature("age"),
        SequenceFeature("hist", 7, 4, pooling="mean", shared_with="item_id"),
    ]
    return user, [SparseFeature("item_id", 7, 4)]


def tiny_generator(**overrides: object) -> tuple[TwoTowerModel, BatchLoader, BatchLoader]:
    user, item = tiny_features()
    model = TwoTowerModel(MLPTower(user, dims=[4]), ItemEmbeddingTower(item[0]))
    x = {
        "user_id": np.array([1, 2, 3, 4]),
        "age": np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32),
        "hist": np.array([[1, 2, 0], [2, 3, 4], [5, 0, 0], [6, 1, 0]]),
        "item_id": np.array([3, 4, 1, 2]),
    }
    x.update(overrides)  # type: ignore[arg-type]
    train, test, _ = MatchDataGenerator(x).generate_dataloader(
        {k: v for k, v in x.items() if k != "item_id"}, {"item_id": np.arange(7)}, batch_size=2
    )
    return model, train, test


def test_missing_feature_is_named(tmp_path: Path) -> None:
    model, train, _ = tiny_generator()
    del train.tensors["age"]
    with pytest.raises(InputError, match="'age'"):
        MatchTrainer(model, model_path=tmp_path, verbose=False).fit(train)


def test_id_beyond_vocab_is_named(tmp_path: Path) -> None:
    model, train, _ = tiny_generator(user_id=np.array([1, 2, 3, 9]))
    with pytest.raises(InputError, match="'user_id' has id 9 outside"):
        MatchTrainer(model, model_path=tmp_path, verbose=False).fit(train)


def test_nan_dense_feature_is_named(tmp_path: Path) -> None:
    model, train, _ = tiny_generator(age=np.array([0.1, np.nan, 0.3, 0.4], dtype=np.float32))
    with pytest.raises(InputError, match="'age' contains NaN"):
        MatchTrainer(model, model_path=tmp_path, verbose=False).fit(train)


def test_empty_history_is_named(tmp_path: Path) -> None:
    model, train, _ = tiny_generator(hist=np.array([[1, 2, 0], [0, 0, 0], [5, 0, 0], [6, 1, 0]]))
    with pytest.raises(InputError, match="'hist' has 1 rows with an empty history"):
        MatchTrainer(model, model_path=tmp_path, verbose=False).fit(train)


def test_unwritable_model_path_fails_before_training(tmp_path: Path) -> None:
    model, _, _ = tiny_generator()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="not writable"):
        MatchTrainer(model, model_path=blocker / "run", verbose=False)


def test_tiny_generator_trains_and_explicit_labels_need_mode_0(tmp_path: Path) -> None:
    model, train, _ = tiny_generator()
    history = MatchTrainer(model, model_path=tmp_path, n_epoch=2, verbose=False).fit(train)
    assert len(history) == 2 and np.isfinite(history[-1]["loss"])
    labelled = MatchDataGenerator(
        {
            "user_id": np.array([1, 2]),
            "age": np.array([0.1, 0.2], dtype=np.float32),
            "hist": np.array([[1, 0, 0], [2, 3, 0]]),
            "item_id": np.array([3, 4]),
        },
        y=np.array([1, 0]),
    )
    tl, _, _ = labelled.generate_dataloader(
        {"user_id": np.array([1])}, {"item_id": np.arange(7)}, 2
    )
    with pytest.raises(InputError, match="mode=0"):
        MatchTrainer(model, mode=2, model_path=tmp_path, verbose=False).fit(tl)
    MatchTrainer(model, mode=0, sampler="none", model_path=tmp_path, verbose=False).fit(tl)


def test_unknown_mode_and_bad_arguments(tmp_path: Path) -> None:
    model, _, _ = tiny_generator()
    with pytest.raises(InputError, match="mode must be"):
        MatchTrainer(model, mode=3, model_path=tmp_path)
    with pytest.raises(InputError, match="n_epoch"):
        MatchTrainer(model, n_epoch=0, model_path=tmp_path)
    with pytest.raises(RechubError, match="no loss named"):
        MatchTrainer(model, loss="no_such_loss", model_path=tmp_path)


def test_item_table_must_match_the_model(tmp_path: Path) -> None:
    model, train, _ = tiny_generator()
    train.item_table = {"item_id": torch.arange(5)}
    with pytest.raises(InputError, match="vocab_size"):
        MatchTrainer(model, model_path=tmp_path, verbose=False).fit(train)


def _short_histories() -> PreparedData:
    from rechub_core.preprocess import prepare
    from rechub_core.synthetic import synthetic_interactions

    # max_len far above the users' lengths: histories mostly padding, as on Amazon data
    return prepare(synthetic_interactions(n_users=200, n_items=80, seed=4), max_len=120)


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec", "ComirecSA", "YoutubeDNN"])
def test_user_vectors_by_length_equal_padded_ones(name: str, tmp_path: Path) -> None:
    from rechub_core import evaluation
    from rechub_core.plugins import get_spec
    from rechub_core.runs import build_model

    data = _short_histories()
    _, val, _ = loaders_from_prepared(data, batch_size=64, eval_batch_size=37)
    assert val.padding_fill() < evaluation.BY_LENGTH_BELOW_FILL
    torch.manual_seed(0)
    model = build_model(get_spec("model", name), DataSchema.from_prepared(data), {})
    trainer = MatchTrainer(model, model_path=tmp_path, verbose=False)
    by_length = trainer.inference_embedding(model, "user", val)
    padded = torch.cat([model.eval().encode_user(b) for b in val]).detach()
    assert by_length.shape == padded.shape
    assert torch.allclose(by_length, padded, atol=1e-5)


def test_length_buckets_visit_every_row_once_in_similar_length_batches() -> None:
    seqs = torch.zeros(1000, 30, dtype=torch.long)
    lengths = torch.randint(1, 31, (1000,), generator=torch.Generator().manual_seed(0))
    for i, n in enumerate(lengths.tolist()):
        seqs[i, :n] = torch.arange(1, n + 1)
    plain = BatchLoader({"seq": seqs, "row": torch.arange(1000)}, 20, shuffle=True, seed=3)
    bucketed = BatchLoader(
        {"seq": seqs, "row": torch.arange(1000)}, 20, shuffle=True, seed=3, length_buckets=10
    )
    rows = torch.cat([b["row"] for b in bucketed])
    assert sorted(rows.tolist()) == list(range(1000))
    spread = [float(lengths[b["row"]].max() - lengths[b["row"]].min()) for b in bucketed]
    spread_plain = [float(lengths[b["row"]].max() - lengths[b["row"]].min()) for b in plain]
    assert np.mean(spread) < np.mean(spread_plain) / 3
    again = torch.cat([b["row"] for b in bucketed])  # same epoch: same order
    assert torch.equal(rows, again)
    bucketed.set_epoch(1)
    assert not torch.equal(rows, torch.cat([b["row"] for b in bucketed]))


def test_thread_rule_never_oversubscribes(monkeypatch: pytest.MonkeyPatch) -> None:
    from rechub_core import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert threads.pick_threads(load=0.1)[0] == 2  # idle 2-core machine
    assert threads.pick_threads(load=1.0)[0] == 1  # one other busy job
    assert threads.pick_threads(load=6.0)[0] == 1  # never below 1
    assert threads.pick_threads(processes=2, load=0.0)[0] == 1  # two DDP ranks share 2 cores
    assert threads.pick_threads(3, load=6.0) == (3, "requested")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.pick_threads(load=0.0) == (1, "OMP_NUM_THREADS")
    with pytest.raises(InputError, match="threads must be >= 1"):
        threads.pick_threads(0)


def test_trainer_threads_argument(tmp_path: Path, synthetic: PreparedData) -> None:
    before = torch.get_num_threads()
    try:
        trainer = MatchTrainer(small_model(synthetic), model_path=tmp_path, threads=1)
        assert trainer.threads == 1 and torch.get_num_threads() == 1
        with pytest.raises(InputError, match="count or 'auto'"):
            MatchTrainer(small_model(synthetic), model_path=tmp_path, threads="many")
    finally:
        torch.set_num_threads(before)


def test_seed_keywords_and_settings_are_one_way_to_say_the_same(
    synthetic: PreparedData, tmp_path: Path
) -> None:
    """MatchTrainer's Torch-RecHub keywords map onto TrainSettings in one place, and training
    with those settings is the same run."""
    import attrs

    from rechub_core.specs import TrainSettings
    from rechub_core.trainer import settings_from_keywords

    settings, extra = settings_from_keywords(
        mode=2,
        n_epoch=2,
        earlystop_patience=4,
        optimizer_params={"lr": 5e-3, "betas": (0.8, 0.9)},
        sequence_batch_size=16,
    )
    assert (settings.epochs, settings.patience, settings.lr, settings.weight_decay) == (
        2,
        4,
        5e-3,
        0.0,
    )
    assert settings.sequence_batch_size == 16 and extra == {"betas": (0.8, 0.9)}
    train, val, _ = loaders_from_prepared(synthetic, batch_size=256)
    by_keywords = trainer_for(small_model(synthetic), tmp_path / "a", n_epoch=2).fit(train, val)
    full = attrs.evolve(
        TrainSettings(mode=2, sampler="full", lr=5e-3, epochs=2, patience=3), loss="softmax"
    )
    trainer = MatchTrainer(
        small_model(synthetic), settings=full, model_path=tmp_path / "b", seed=7, verbose=False
    )
    assert trainer.settings is full
    by_settings = trainer.fit(train, val)
    assert [h["loss"] for h in by_settings] == pytest.approx([h["loss"] for h in by_keywords])
    with pytest.raises(InputError, match=r"settings= and n_epoch"):
        MatchTrainer(small_model(synthetic), settings=full, n_epoch=5, model_path=tmp_path)


def test_train_defaults_is_the_old_name_of_train_settings() -> None:
    from rechub_core import specs

    with pytest.warns(DeprecationWarning, match="TrainSettings"):
        assert specs.TrainDefaults is specs.TrainSettings


def test_lr_decays_after_epochs_without_improvement_and_survives_resume(
    synthetic: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """settings.lr_decay multiplies the learning rate after each epoch whose validation does
    not improve, never after one that does; the decayed rate is in the checkpoint, so a
    resumed run continues with it; each epoch's record says the rate the next one uses."""
    import attrs

    from rechub_core.specs import TrainSettings

    improved = iter([True, False, True, False, False])
    monkeypatch.setattr(MatchTrainer, "_validate_epoch", lambda self, *a: next(improved))
    train, val, _ = loaders_from_prepared(synthetic, batch_size=512)
    settings = TrainSettings(mode=2, sampler="full", lr=8e-3, epochs=4, patience=5, lr_decay=0.5)
    trainer = MatchTrainer(
        small_model(synthetic), settings=settings, model_path=tmp_path, verbose=False
    )
    history = trainer.fit(train, val)
    assert [h["lr"] for h in history] == [8e-3, 4e-3, 4e-3, 2e-3]
    resumed = MatchTrainer(
        small_model(synthetic),
        settings=attrs.evolve(settings, epochs=5),
        model_path=tmp_path,
        verbose=False,
    )
    assert resumed.fit(train, val, resume=True)[-1]["lr"] == 1e-3  # epoch 5, not improved
    for bad in (0.0, 1.5):
        with pytest.raises(InputError, match="lr_decay must lie in"):
            attrs.evolve(settings, lr_decay=bad)


def test_logits_dtype_is_resolved_checked_and_bfloat16_scores_track_float32(
    synthetic: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared-candidate scores of training run in bfloat16 where asked (or by "auto" on a
    CPU that multiplies it natively) against catalogues of LOW_PRECISION_MIN_CANDIDATES or
    more: the loss stays float32 and within bfloat16 rounding of the float32 loss, the
    gradients are float32, and a bad value is named."""
    from rechub_core.trainer import resolve_logits_dtype

    cpu = torch.device("cpu")
    assert resolve_logits_dtype("float32", cpu)[0] == torch.float32
    assert resolve_logits_dtype("bfloat16", cpu)[0] == torch.bfloat16
    assert resolve_logits_dtype("auto", torch.device("meta")) == (torch.float32, "auto: meta")
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert resolve_logits_dtype("auto", cpu)[0] == (torch.bfloat16 if native else torch.float32)
    with pytest.raises(InputError, match="logits_dtype must be one of 'auto', 'float32'"):
        resolve_logits_dtype("float16", cpu)
    from rechub_core import batch_loss

    train, _, _ = loaders_from_prepared(synthetic, batch_size=256)
    batch = next(iter(train))
    assert train.n_items < batch_loss.LOW_PRECISION_MIN_CANDIDATES
    small = [
        trainer_for(small_model(synthetic), tmp_path / f"s{name}", logits_dtype=name)
        for name in ("float32", "bfloat16")
    ]
    for trainer in small:
        trainer.sampler.bind(train.n_items, train.item_counts)
    # a catalogue below the bound is scored in float32 whatever the setting: the same loss
    assert [t.batch_loss(batch, train, torch.Generator().manual_seed(0)).item() for t in small] == [
        small[0].batch_loss(batch, train, torch.Generator().manual_seed(0)).item()
    ] * 2
    assert [t.scored_dtype for t in small] == ["float32"] * 2  # what metrics.json reports
    monkeypatch.setattr(batch_loss, "LOW_PRECISION_MIN_CANDIDATES", 1)
    losses, grads = {}, {}
    for name in ("float32", "bfloat16"):
        trainer = trainer_for(small_model(synthetic), tmp_path / name, logits_dtype=name)
        trainer.sampler.bind(train.n_items, train.item_counts)
        loss = trainer.batch_loss(batch, train, torch.Generator().manual_seed(0))
        loss.backward()
        losses[name] = loss.item()
        grads[name] = torch.cat(
            [p.grad.reshape(-1) for p in trainer.model.parameters() if p.grad is not None]
        )
        assert loss.dtype == torch.float32 and grads[name].dtype == torch.float32
        assert trainer.scored_dtype == name
    assert losses["bfloat16"] != losses["float32"]  # it did run in bfloat16
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=1e-2)
    cosine = torch.nn.functional.cosine_similarity(grads["float32"], grads["bfloat16"], dim=0)
    assert cosine > 0.99
