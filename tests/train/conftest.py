"""Tiny training settings: 64 px photos, batches of 16, no worker processes, packaged weights, float32 (a measured
`--precision auto` could pick differently between two runs that a test compares)."""

from __future__ import annotations

import pytest

from bintally.train.config import TrainConfig

# The raw weights, not the default EMA: one validation per epoch, as the scripted validations expect (the EMA's
# tests turn it on).
TINY = {"image_size": 64, "batch_size": 16, "workers": 0, "epochs": 2, "precision": "fp32", "ema_decay": None}
TINY_ARGS = ["--image-size", "64", "--batch-size", "16", "--workers", "0", "--precision", "fp32", "--ema-decay", "0"]


def _tiny(**overrides) -> TrainConfig:
    return TrainConfig(**{**TINY, **overrides})


@pytest.fixture(scope="session")
def tiny():
    """TrainConfig(**overrides) on top of the tiny settings."""
    return _tiny


@pytest.fixture(scope="session")
def tiny_args() -> list[str]:
    return TINY_ARGS


@pytest.fixture(scope="session")
def tiny_run(small_manifest, tmp_path_factory):
    """A finished two-epoch run (head only) on the small real manifest: (run dir, TrainResult)."""
    from bintally.train.loop import train

    out = str(tmp_path_factory.mktemp("runs") / "tiny")
    return out, train(str(small_manifest), out, _tiny(strategy="head"))
