"""`bintally train --config FILE`: a settings file (as tune writes best_config.yaml), overridden by explicit options."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from bintally.cli import app
from bintally.model.artifact import load_artifact


def test_config_file_sets_the_run_and_command_line_options_win(small_manifest, tmp_path):
    settings = {"strategy": "head", "head": "classify", "epochs": 3, "image_size": 64, "batch_size": 16,
                "workers": 0, "limit_train": 16, "limit_val": 8, "lr": 0.002}  # fmt: skip
    (tmp_path / "best_config.yaml").write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    args = ["train", str(small_manifest), "--out", str(out), "--config", str(tmp_path / "best_config.yaml"), "--epochs", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    used = load_artifact(str(out)).spec.train_config
    assert used["epochs"] == 1  # the command line overrides the file
    assert {k: used[k] for k in ("strategy", "head", "image_size", "limit_train", "lr")} == {
        "strategy": "head", "head": "classify", "image_size": 64, "limit_train": 16, "lr": 0.002}  # fmt: skip


def test_a_config_file_with_an_unknown_setting_is_a_usage_error(small_manifest, tmp_path):
    (tmp_path / "bad.yaml").write_text("epochz: 3\n")
    result = CliRunner().invoke(app, ["train", str(small_manifest), "--out", str(tmp_path / "run"), "--config", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "epochz" in result.output


def test_a_named_recipe_sets_its_fields_and_a_config_file_then_options_override_it(small_manifest, tmp_path):
    """--recipe original: frozen backbone, RandomResizedCrop, classification. The file sets augment none (over the
    recipe), --head ordinal on the command line wins over both; what neither touches keeps the recipe's value."""
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump({"augment": "none", "image_size": 64}))
    out = tmp_path / "run"
    args = ["train", str(small_manifest), "--out", str(out), "--recipe", "original", "--config", str(tmp_path / "settings.yaml"),
            "--head", "ordinal", "--epochs", "1", "--batch-size", "16", "--workers", "0", "--limit-train", "16"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    used = load_artifact(str(out)).spec.train_config
    assert (used["strategy"], used["augment"], used["head"], used["image_size"]) == ("head", "none", "ordinal", 64)


def test_an_unknown_recipe_is_a_usage_error(small_manifest, tmp_path):
    result = CliRunner().invoke(app, ["train", str(small_manifest), "--out", str(tmp_path / "run"), "--recipe", "fastest"])
    assert result.exit_code == 2 and "fastest" in result.output and "gpu" in result.output
