"""--retrain-best: the best trial's config trained on train+val, tested once, written as a model artifact."""

from __future__ import annotations

import numpy as np
import optuna
import torch

from bintally import storage
from bintally.data.images import decode_image
from bintally.data.manifest import read_manifest
from bintally.model.artifact import load_artifact
from bintally.model.preprocess import prepare_batch
from bintally.train.config import TrainConfig
from bintally.tune.final import final_config
from bintally.tune.report import best_trial
from bintally.tune.study import load_study


def test_retrain_best_writes_a_tested_artifact(sqlite_run, small_manifest):
    """The final model (from the fixture's --retrain-best) loads with nothing else, was trained on train+val without
    validation for the best trial's best epoch count, with its lr, carries test-split metrics, and predicts real bins."""
    best = best_trial(load_study(f"sqlite:///{sqlite_run / 'study.db'}", "sq"))
    artifact = load_artifact(str(sqlite_run / "final"))
    cfg = artifact.spec.train_config
    assert (cfg["train_splits"], cfg["val_split"]) == (["train", "val"], None)
    assert (cfg["lr"], cfg["epochs"]) == (best.params["lr"], best.user_attrs["best_epoch"] + 1)
    assert artifact.spec.metrics["split"] == "test" and 0 <= artifact.spec.metrics["accuracy"] <= 1
    assert (sqlite_run / "final-test" / "report.html").exists()

    rows = read_manifest(str(small_manifest)).split("test")
    images = [decode_image(storage.read_bytes(r.uri)) for r in rows]
    with torch.no_grad():
        logits = artifact.torch_model()(torch.from_numpy(prepare_batch(images, artifact.spec.preprocess)))
    assert logits.shape == (len(rows), len(artifact.spec.classes)) and np.isfinite(logits.numpy()).all()


def test_the_final_model_learns_from_every_photo_the_search_sampled_from():
    """Tried: a best trial that trained on a 1,132-photo sample (the cpu-screen space's budget) and peaked at epoch 4.
    Must hold: the final config trains on all of train+val (no limit), without validation, for 4 epochs, the rest kept."""
    trial_cfg = TrainConfig(limit_train=1132, lr=0.002, epochs=6, image_size=160)
    best = optuna.trial.create_trial(value=0.34, user_attrs={"config": trial_cfg.model_dump(mode="json"), "best_epoch": 3})
    cfg = final_config(best)
    assert (cfg.limit_train, cfg.train_splits, cfg.val_split, cfg.epochs) == (None, ["train", "val"], None, 4)
    assert (cfg.lr, cfg.image_size) == (0.002, 160)
