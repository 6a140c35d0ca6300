"""The training loop on real photos: best checkpoint, early stopping, resume, NaN, splits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bintally.cli import app
from bintally.model.artifact import load_artifact
from bintally.train.config import TrainConfig
from bintally.train.loop import CHECKPOINT_FILE, Trainer, train, warmup_cosine


def scripted_validation(monkeypatch, accuracies: list[float]) -> list[dict]:
    """Replace validation with scripted accuracies; returns a snapshot of the weights at each validation."""
    snapshots: list[dict] = []

    def validate(self: Trainer, model: torch.nn.Module) -> dict[str, float]:
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        acc = accuracies[len(snapshots) - 1]
        return {"accuracy": acc, "within_one": acc, "mae": 1 - acc, "rmse": 1 - acc, "macro_f1": acc, "loss": 1 - acc}

    monkeypatch.setattr(Trainer, "validate", validate)
    return snapshots


def test_a_short_run_on_real_bins_learns(abid_root, tmp_path):
    """100 real bins each of counts 1 and 5, half to train and half to validate on; 4 epochs of a full fine-tune
    with a classification head at 128 px (fp32 on every CPU, seeded). Must hold: validation loss falls from the first epoch to the
    last, and validation accuracy beats always answering the training rows' most common count by 10 points
    (measured: 68% against 49%; 10 points is about two standard errors on 100 bins)."""
    from bintally.data.abid import AbidRoot
    from bintally.data.manifest import SplitRatios, build_manifest, write_manifest
    from bintally.data.subset import Subset
    from bintally.evaluate.metrics import constant_answer

    build = build_manifest(AbidRoot(str(abid_root)), Subset(counts=(1, 5), per_count=100), SplitRatios(train=0.5, val=0.5, test=0.0))
    manifest = str(tmp_path / "one-or-five.parquet")
    write_manifest(build, manifest)
    cfg = TrainConfig(classes=[1, 5], image_size=128, batch_size=16, workers=0, epochs=4, head="classify", precision="fp32")
    result = train(manifest, str(tmp_path / "run"), cfg)
    rows = [r for r in build.manifest.rows if r.count in (1, 5)]
    baseline = constant_answer([r.count for r in rows if r.split == "train"], [r.count for r in rows if r.split == "val"])
    val = [h["val"] for h in result.history]
    assert val[-1]["loss"] < val[0]["loss"]
    assert result.best_val["accuracy"] >= baseline["accuracy"] + 0.10, (result.best_val, baseline)


def test_bf16_training_validates_in_the_precision_the_model_is_served_in(small_manifest, tiny, tmp_path):
    """Tried: two epochs under --precision bf16, then the saved artifact scored on the validation split as
    `evaluate` and serving score it (float32). Must hold: the same accuracy, +-1 and MAE as the training loop
    recorded for its best epoch (measured before the fix: validation under bf16 autocast was 3 points away)."""
    from bintally.data.manifest import read_manifest
    from bintally.evaluate.calibrate import split_logits
    from bintally.evaluate.metrics import metrics_from_logits

    out = str(tmp_path / "run")
    result = train(str(small_manifest), out, tiny(precision="bf16", limit_train=32))
    artifact = load_artifact(out)
    logits, counts = split_logits(artifact, read_manifest(str(small_manifest)), "val", "cpu", workers=0)
    served = metrics_from_logits(logits, counts, artifact.spec.classes)
    assert {k: served[k] for k in ("accuracy", "within_one", "mae")} == pytest.approx(
        {k: result.best_val[k] for k in ("accuracy", "within_one", "mae")}, abs=1e-9
    )


def test_best_checkpoint_is_a_copy_of_the_best_epoch(small_manifest, tiny, tmp_path, monkeypatch):
    """Validation is best at epoch 1 of 3: the artifact holds epoch 1's weights, not the live (last) ones."""
    snapshots = scripted_validation(monkeypatch, [0.6, 0.2, 0.4])
    out = str(tmp_path / "run")
    result = train(str(small_manifest), out, tiny(epochs=3, strategy="head"))
    assert result.best_epoch == 0 and result.best_val["accuracy"] == 0.6
    saved = load_artifact(out).state_dict()
    assert saved.keys() == snapshots[0].keys()
    assert all(torch.equal(saved[k], snapshots[0][k]) for k in saved)
    assert not all(torch.equal(saved[k], snapshots[-1][k]) for k in saved)


def test_ema_weights_are_validated_kept_and_compared_with_the_raw_ones(small_manifest, tiny, tmp_path, monkeypatch):
    """With --ema-decay and --validate-raw each epoch validates the EMA, then the raw weights. The EMA is best at
    epoch 1 (0.6 > 0.2) though the raw weights score 0.9 at epoch 2: the artifact holds epoch 1's EMA, and history
    keeps both scores."""
    snapshots = scripted_validation(monkeypatch, [0.6, 0.1, 0.2, 0.9])
    out = str(tmp_path / "run")
    result = train(str(small_manifest), out, tiny(epochs=2, strategy="head", ema_decay=0.9, validate_raw=True, limit_train=48))
    assert result.best_epoch == 0
    assert [(h["val"]["accuracy"], h["val_raw"]["accuracy"]) for h in result.history] == [(0.6, 0.1), (0.2, 0.9)]
    ema, raw = snapshots[0], snapshots[1]
    assert not all(torch.equal(ema[k], raw[k]) for k in ema), "the average must differ from the raw weights"
    saved = load_artifact(out).state_dict()
    assert all(torch.equal(saved[k], ema[k]) for k in saved)


def test_an_ema_run_validates_only_the_average_unless_asked(small_manifest, tiny, tmp_path, monkeypatch):
    """Tried: two epochs with an EMA and validate_raw left at its default. Must hold: one validation per epoch, of
    the average (a second pass of the raw weights costs ~10% of a 224 px epoch here), and no `val_raw` in history."""
    snapshots = scripted_validation(monkeypatch, [0.4, 0.5])
    result = train(str(small_manifest), str(tmp_path / "run"), tiny(epochs=2, strategy="head", ema_decay=0.9, limit_train=48))
    assert len(snapshots) == 2 and [h["val"]["accuracy"] for h in result.history] == [0.4, 0.5]
    assert not any("val_raw" in h for h in result.history)


def test_a_stopped_ema_run_resumes_to_the_same_weights(small_manifest, tiny, tmp_path):
    """Stopped after epoch 1 (on_epoch raises), then resumed: the EMA and the kept weights equal an uninterrupted run's."""
    cfg = tiny(epochs=2, strategy="head", ema_decay=0.9, limit_train=32)

    def stop(epoch: int, val: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(str(small_manifest), str(tmp_path / "stopped"), cfg, on_epoch=stop)
    resumed = train(str(small_manifest), str(tmp_path / "stopped"), cfg, resume=True)
    reference = train(str(small_manifest), str(tmp_path / "reference"), cfg)
    timeless = [[{k: v for k, v in h.items() if k != "seconds"} for h in run.history] for run in (resumed, reference)]
    assert resumed.start_epoch == 1 and timeless[0] == timeless[1]
    for name in ("model", "ema"):
        ours = torch.load(tmp_path / "stopped" / CHECKPOINT_FILE, weights_only=True)[name]
        theirs = torch.load(tmp_path / "reference" / CHECKPOINT_FILE, weights_only=True)[name]
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name


def test_early_stopping_and_on_epoch(small_manifest, tiny, tmp_path, monkeypatch):
    """Validation only gets worse after epoch 1; patience 2 stops after epoch 3 of 6; on_epoch saw each epoch."""
    scripted_validation(monkeypatch, [0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    seen = []
    result = train(
        str(small_manifest),
        str(tmp_path / "run"),
        tiny(epochs=6, patience=2, strategy="head"),
        on_epoch=lambda e, v: seen.append((e, v["accuracy"])),
    )
    assert result.stopped_early and len(result.history) == 3
    assert seen == [(0, 0.5), (1, 0.4), (2, 0.3)]


def test_train_without_a_terminal_prints_progress_lines(small_manifest, tiny_args, tmp_path, monkeypatch):
    """Under nohup or CI (no terminal) `bintally train` prints plain progress lines between epochs: the step of
    the epoch, its total, the rate, time left, loss and accuracy (here every update: BINTALLY_PROGRESS_EVERY_S=0)."""
    monkeypatch.setenv("BINTALLY_PROGRESS_EVERY_S", "0")
    args = ["train", str(small_manifest), "--out", str(tmp_path / "run"), "--epochs", "1", "--limit-train", "48", *tiny_args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("train: ")]
    assert lines and lines[-1].startswith("train: 3/3 (") and "left) epoch 1/1 loss " in lines[-1] and " acc " in lines[-1]


def test_on_epoch_exceptions_propagate(small_manifest, tiny, tmp_path):
    """An exception raised by on_epoch (as Optuna's pruning does) ends training and reaches the caller."""

    class Pruned(Exception):
        pass

    def prune(epoch: int, val: dict[str, float]) -> None:
        assert set(val) == {"accuracy", "within_one", "mae", "rmse", "macro_f1", "loss"}
        raise Pruned

    with pytest.raises(Pruned):
        train(str(small_manifest), str(tmp_path / "run"), tiny(epochs=3, strategy="head", limit_train=16), on_epoch=prune)


def test_final_model_on_train_and_val(small_manifest, tiny, tmp_path):
    """train_splits train+val without validation keeps the last epoch; validating on a training split is refused."""
    out = str(tmp_path / "run")
    result = train(str(small_manifest), out, tiny(epochs=1, strategy="head", train_splits=["train", "val"], val_split=None, limit_train=16))
    assert result.best_epoch == 0 and result.history[0]["val"] == {}
    assert load_artifact(out).spec.classes == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="also a training split"):
        train(str(small_manifest), str(tmp_path / "other"), tiny(train_splits=["train", "val"]))


def test_a_run_is_never_overwritten_or_resumed_differently(small_manifest, tiny, tiny_run):
    """Training into a finished run without --resume, or resuming it with another learning rate, is refused."""
    out, _ = tiny_run
    with pytest.raises(FileExistsError, match="--resume"):
        train(str(small_manifest), out, tiny(strategy="head"))
    with pytest.raises(ValueError, match=f"lr: {TrainConfig().lr!r} -> 0.01"):  # the run was trained at the default lr
        train(str(small_manifest), out, tiny(strategy="head", lr=0.01), resume=True)


def test_nan_loss_is_a_clear_error(small_manifest, tiny_args, tmp_path):
    """A learning rate of 1e10 blows the weights up in the first epoch: the CLI stops with 'training diverged',
    naming the epoch and the learning rate, exit code 1."""
    result = CliRunner().invoke(app, ["train", str(small_manifest), "--out", str(tmp_path / "run"), "--lr", "1e10", *tiny_args])
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 1
    assert "training diverged" in output and "at epoch 1, step " in output and "(now 1e+10)" in output


def test_kill_and_resume_matches_an_uninterrupted_run(small_manifest, tiny_args, tiny, tmp_path):
    """SIGKILL `bintally train` once its first checkpoint exists; `--resume` starts at the checkpointed epoch,
    finishes, and ends with exactly the weights and history of a run that was never interrupted (seeded)."""
    run, epochs = tmp_path / "killed", 3
    args = ["--epochs", str(epochs), "--limit-train", "32", *tiny_args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bintally", "train", str(small_manifest), "--out", str(run), *args], stderr=subprocess.DEVNULL
    )
    checkpoint = run / CHECKPOINT_FILE
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = torch.load(checkpoint, weights_only=True)["state"]["next_epoch"]
    assert 1 <= done < epochs

    cfg = tiny(epochs=epochs, limit_train=32)
    resumed = train(str(small_manifest), str(run), cfg, resume=True)
    assert resumed.start_epoch == done
    assert [h["epoch"] for h in resumed.history] == list(range(epochs))

    reference = train(str(small_manifest), str(tmp_path / "reference"), cfg)
    assert [h["val"] for h in resumed.history] == [h["val"] for h in reference.history]
    ours, theirs = load_artifact(str(run)).state_dict(), load_artifact(str(tmp_path / "reference")).state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert Path(run / "model.json").exists() and not list(run.glob("*.part-*"))


def test_warmup_rises_linearly_then_the_cosine_falls_to_zero():
    """Tried: 4 warm-up steps of 20. Must hold: the factor climbs to 1 by the end of the warm-up, then only falls, to 0."""
    factor = warmup_cosine(4, 20)
    rising = [factor(s) for s in range(5)]
    falling = [factor(s) for s in range(4, 21)]
    assert rising == sorted(rising) and rising[0] == pytest.approx(0.2) and rising[-1] == pytest.approx(1.0)
    assert falling == sorted(falling, reverse=True) and falling[-1] == pytest.approx(0.0)
    assert warmup_cosine(0, 20)(0) == pytest.approx(1.0)  # no warm-up: the plain cosine from the full rate


def test_the_weights_ema_is_the_default_and_zero_turns_it_off():
    """Tried: the default config, and --ema-decay 0 as the CLI passes it. Must hold: the default ships an EMA (decay
    0.998, chosen on validation); 0 means the raw weights, stored as None like a config that never had one."""
    assert TrainConfig().ema_decay == 0.998
    assert TrainConfig(ema_decay=0).ema_decay is None and TrainConfig(ema_decay=None).ema_decay is None


def test_training_streams_from_shards(small_manifest, small_shards, tiny, tmp_path, monkeypatch):
    """Training from shards takes the same rows and counts as from files: full batches of the training split, the same
    classes, a loadable artifact that records where its photos came from. Validation and the final calibration
    stream too (no photo file is read: the file dataset raises), and score the validation split as its files do:
    the saved weights' accuracy on the files (from `evaluate`), and the temperature fitted on them."""
    import bintally.evaluate.calibrate as calibration
    import bintally.train.loop as loop
    from bintally.data.manifest import read_manifest
    from bintally.evaluate.calibrate import CalibrateConfig, calibrate, split_logits

    def no_files(*args, **kwargs):
        raise AssertionError("a photo file was read while training from shards")

    monkeypatch.setattr(loop, "BinDataset", no_files)
    monkeypatch.setattr(calibration, "BinDataset", no_files)
    cfg = tiny(epochs=1, strategy="head", workers=2, shuffle_buffer=8, ema_decay=None)
    result = train(str(small_manifest), str(tmp_path / "run"), cfg, shards=small_shards)
    monkeypatch.undo()
    artifact = load_artifact(str(tmp_path / "run"))
    assert artifact.spec.classes == [1, 2, 3, 4, 5] and artifact.spec.train_config["shards"] == small_shards
    logits, counts = split_logits(artifact, read_manifest(str(small_manifest)), "val", "cpu", workers=0)
    from_files = float((np.asarray(artifact.spec.classes)[logits.argmax(axis=1)] == counts).mean())
    assert result.history[0]["val"]["accuracy"] == pytest.approx(from_files)
    on_files = calibrate(CalibrateConfig(model=str(tmp_path / "run"), manifest=str(small_manifest), device="cpu", workers=0))
    assert on_files.report.temperature == pytest.approx(artifact.spec.temperature, rel=1e-4)


def test_shards_of_another_manifest_are_refused(small_manifest, small_shards, tiny, tmp_path):
    from bintally.data.manifest import ManifestBuild, read_manifest, write_manifest

    manifest = read_manifest(str(small_manifest))
    other = tmp_path / "other.parquet"
    write_manifest(ManifestBuild(manifest=manifest.model_copy(update={"rows": manifest.rows[1:]}), problems=[]), str(other))
    with pytest.raises(ValueError, match="written from another manifest"):
        train(str(other), str(tmp_path / "run"), tiny(epochs=1), shards=small_shards)
