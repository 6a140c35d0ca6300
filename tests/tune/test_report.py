"""The report: reproduced from the study's storage alone, with the best config and the plots."""

from __future__ import annotations

import json

import optuna
import yaml
from typer.testing import CliRunner

from bintally.cli import app
from bintally.tune.report import best_config

PNG = b"\x89PNG\r\n\x1a\n"


def test_show_reproduces_the_report_from_storage_alone(sqlite_run, tmp_path, monkeypatch):
    """`bintally tune --show --storage ... --study ...` from another directory, with no manifest or space: the same
    summary as the run wrote, a best config that is the best trial's, and PNG plots."""
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{sqlite_run / 'study.db'}"
    result = CliRunner().invoke(app, ["tune", "--show", "--storage", storage, "--study", "sq", "--out", "again"])
    assert result.exit_code == 0, result.output
    again = tmp_path / "again"
    assert json.loads((again / "summary.json").read_text()) == json.loads((sqlite_run / "summary.json").read_text())
    summary = json.loads((again / "summary.json").read_text())
    best = summary["best"]
    assert best["value"] == max(t["value"] for t in summary["trials"])
    assert yaml.safe_load((again / "best_config.yaml").read_text())["lr"] == best["params"]["lr"]
    for name in ("history.png", "learning_curves.png", "importance.png"):
        assert (again / name).read_bytes().startswith(PNG)
    assert f"best: trial {best['number']}" in result.output


def test_tuning_needs_a_manifest_and_trials(tmp_path):
    """Without --show, a missing MANIFEST or --trials is a usage error, and nothing is created."""
    result = CliRunner().invoke(app, ["tune", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "needs MANIFEST and --trials" in result.output
    assert not (tmp_path / "x").exists()


def test_tune_without_a_terminal_prints_progress_lines_within_trials(sqlite_run):
    """Each trial's training steps show as plain lines (step of total, rate, time left, epoch, loss) between the
    one-line trial results, so a tuner under nohup or in a container shows life during a long trial."""
    lines = (sqlite_run / "cli.log").read_text().splitlines()
    steps = [line for line in lines if line.startswith("train: ")]
    assert steps and all(" epoch " in line and " loss " in line for line in steps)
    assert any(" left) epoch " in line for line in steps)  # from a pass's second step on, with a rate
    assert any(line.startswith("trial ") for line in lines)


def test_best_config_leaves_out_the_photo_sample_the_search_trained_on():
    """Tried: a best trial that trained on 1,132 sampled photos (the cpu-screen space). Must hold: best_config.yaml's
    settings train on every photo (limit_train None), everything else the trial's own."""
    trial_config = {"lr": 0.002, "image_size": 160, "limit_train": 1132, "epochs": 6}
    trial = optuna.trial.create_trial(value=0.36, user_attrs={"config": trial_config})
    assert best_config(trial) == {"lr": 0.002, "image_size": 160, "limit_train": None, "epochs": 6}
