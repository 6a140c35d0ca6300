"""SageMaker's `IMAGE train`: `bintally train` with no manifest runs the job laid out under a (temporary) /opt/ml."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bintally.cli import app
from bintally.model.artifact import load_artifact
from bintally.train.sagemaker import job_config

IDS_PER_COUNT = 20


def job_root(tmp_path: Path, abid_root: Path, hyperparameters: dict[str, str]) -> Path:
    """/opt/ml as SageMaker lays it out: a `training` channel holding a small ABID root of real bins, and the
    hyperparameters as text (as SageMaker passes them)."""
    root = tmp_path / "opt" / "ml"
    channel = root / "input" / "data" / "training"
    (channel / "bin-images").mkdir(parents=True)
    (channel / "metadata").mkdir()
    taken: dict[int, int] = {}
    for meta in sorted((abid_root / "metadata").glob("*.json")):
        count = json.loads(meta.read_text()).get("EXPECTED_QUANTITY")
        if count in (1, 2, 3) and taken.get(count, 0) < IDS_PER_COUNT:
            taken[count] = taken.get(count, 0) + 1
            shutil.copy(meta, channel / "metadata")
            shutil.copy(abid_root / "bin-images" / f"{meta.stem}.jpg", channel / "bin-images")
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (root / "model").mkdir()
    return root


def test_the_hyperparameters_sagemaker_adds_are_ignored_and_a_misspelt_option_is_still_refused(tmp_path, caplog):
    """Tried: a tuning job's hyperparameters.json: the tuner's `_tuning_objective_metric` and the SDK's `sagemaker_*`
    beside `epochs`; then the same with `epochz`. Must hold: the first trains with epochs 2 and logs what it
    ignored; the second is refused naming `epochz`."""
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    added = {"_tuning_objective_metric": "val_accuracy", "sagemaker_program": "train.py", "sagemaker_region": "us-east-1"}
    (config / "hyperparameters.json").write_text(json.dumps({"epochs": "2", **added}))
    with caplog.at_level(logging.WARNING):
        assert job_config(tmp_path).epochs == 2
    assert "_tuning_objective_metric, sagemaker_program, sagemaker_region" in caplog.text
    (config / "hyperparameters.json").write_text(json.dumps({"epochz": "2", **added}))
    with pytest.raises(ValueError, match="unknown hyperparameters: epochz$"):
        job_config(tmp_path)


def test_a_training_job_writes_its_artifact_where_sagemaker_collects_it(abid_root, tmp_path):
    """Tried: `IMAGE train` (here `bintally train` with BINTALLY_SAGEMAKER_ROOT) on 60 real bins, with the original
    system's hyperparameter names as text. Must hold: exit 0; /opt/ml/model is an artifact trained with them."""
    hyperparameters = {"epochs": "1", "batch_size": "8", "learning_rate": "0.002", "image_size": "64", "workers": "0", "strategy": "head"}
    root = job_root(tmp_path, abid_root, hyperparameters)
    result = CliRunner().invoke(app, ["train"], env={"BINTALLY_SAGEMAKER_ROOT": str(root)})
    assert result.exit_code == 0, result.output
    spec = load_artifact(str(root / "model")).spec
    assert spec.classes == [1, 2, 3] and spec.preprocess.size == 64
    assert spec.train_config["lr"] == 0.002 and spec.train_config["batch_size"] == 8
    assert not (root / "output" / "failure").exists()


def test_a_failed_job_says_why_in_the_failure_file(abid_root, tmp_path):
    """Tried: a channel that is neither a manifest nor an ABID root; then an unknown hyperparameter. Must hold:
    a non-zero exit, and /opt/ml/output/failure naming the cause, as SageMaker reports it."""
    root = job_root(tmp_path, abid_root, {"epochs": "1"})
    shutil.rmtree(root / "input" / "data" / "training" / "metadata")
    result = CliRunner().invoke(app, ["train"], env={"BINTALLY_SAGEMAKER_ROOT": str(root)})
    assert result.exit_code != 0
    assert "neither a manifest (.parquet) nor an ABID root" in (root / "output" / "failure").read_text()

    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"epochz": "3"}))
    result = CliRunner().invoke(app, ["train"], env={"BINTALLY_SAGEMAKER_ROOT": str(root)})
    assert result.exit_code != 0 and "unknown hyperparameters: epochz" in (root / "output" / "failure").read_text()
