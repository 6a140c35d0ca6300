"""The final model: the best trial's configuration trained on train+val, then tested once."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial
from pydantic import BaseModel

from bintally import storage
from bintally.data.manifest import read_manifest
from bintally.evaluate.report import evaluate
from bintally.train.config import TrainConfig
from bintally.train.loop import train
from bintally.tune.report import best_config, best_trial
from bintally.tune.study import TuneError, study_settings


class FinalModel(BaseModel):
    model: str  # the model artifact directory
    trial: int  # the study's best trial it was made from
    config: TrainConfig
    test: dict  # metrics on the test split, also recorded in the artifact
    report: list[str]  # the evaluation report's files


def final_config(best: FrozenTrial) -> TrainConfig:
    """The best trial's config on train+val, without validation, for the epochs its best validation took.

    With no validation split, training keeps the last epoch, so the epoch count is the one choice
    that carries the best trial's early stopping over.
    """
    values = {**best_config(best), "train_splits": ["train", "val"], "val_split": None}
    return TrainConfig.model_validate({**values, "epochs": best.user_attrs["best_epoch"] + 1})


def retrain_best(study: optuna.Study, manifest: str, out: str) -> FinalModel:
    """Train the final model into OUT/final, evaluate it once on the test split into OUT/final-test.

    Re-running resumes or reuses the same run (same config); a changed best trial is refused by training.
    """
    best = best_trial(study)
    if best is None:
        raise TuneError(f"study {study.study_name!r} has no complete trial to retrain")
    if read_manifest(manifest).digest() != study_settings(study).manifest_digest:
        raise TuneError(f"{manifest} is not the manifest study {study.study_name!r} was tuned on")
    cfg = final_config(best)
    model_dir = storage.join(out, "final")
    train(manifest, model_dir, cfg, resume=True)
    evaluation = evaluate(model_dir, manifest, storage.join(out, "final-test"), device=cfg.device, workers=cfg.workers)
    return FinalModel(model=model_dir, trial=best.number, config=cfg, test=evaluation.metrics, report=evaluation.files)
