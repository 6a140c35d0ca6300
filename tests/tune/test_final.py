"""--retrain-best: the best trial's config trained on train+val, tested once, written as a model artifact."""

from __future__ import annotations

import numpy as np
import torch

from bintally import storage
from bintally.data.images import decode_image
from bintally.data.manifest import read_manifest
from bintally.model.artifact import load_artifact
from bintally.model.preprocess import prepare_batch
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
