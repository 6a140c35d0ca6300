"""Tuning fixtures: a tiny search space that trains in seconds on CPU, the tuner as a subprocess, PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bintally.cli import app

# Two-epoch head-only trials on 64 px photos: seconds each on 2 CPU cores.
TINY_SPACE = """
description: tiny, for tests
fixed:
  backbone: tf_efficientnet_lite0
  weights: packaged
  strategy: head
  head: classify
  augment: none
  image_size: 64
  batch_size: 16
  epochs: 2
  device: cpu
  workers: 0
  ema_decay: null  # the raw weights: the EMA's extra update and validation would only slow these trials down
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""

POSTGRES_ENV = "BINTALLY_TEST_POSTGRES_URL"
BINTALLY = [str(Path(sys.executable).with_name("bintally"))]


@pytest.fixture(scope="session")
def tiny_space(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


class Tuner:
    """`bintally tune` in its own process, its output kept in OUT/tune.log for a failing test to show."""

    def __init__(self, manifest: Path, space: Path, out: Path, *args: str):
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        cmd = [*BINTALLY, "tune", str(manifest), "--space", str(space), "--out", str(out), *args]
        with open(out / "tune.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def wait_ok(self, timeout: float = 300) -> None:
        assert self.proc.wait(timeout=timeout) == 0, (self.out / "tune.log").read_text()[-4000:]


@pytest.fixture
def tuner():
    """Start tuners; any still running when the test ends are killed."""
    started: list[Tuner] = []

    def start(*args) -> Tuner:
        started.append(Tuner(*args))
        return started[-1]

    yield start
    for t in started:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL database for shared studies; under CI it must be there (a skip would hide a gap)."""
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    message = f"{POSTGRES_ENV} is not set (e.g. postgresql://bintally:bintally@127.0.0.1:5432/bintally_test)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_run(tmp_path_factory, small_manifest, tiny_space) -> Path:
    """One finished run of the user's path: a 4-trial SQLite study, then --retrain-best; its OUT directory."""
    out = tmp_path_factory.mktemp("tune") / "run"
    args = ["tune", str(small_manifest), "--trials", "4", "--study", "sq", "--space", str(tiny_space), "--pruner", "none"]
    # As under nohup or CI: no terminal, so progress comes as plain lines (here at every step).
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--retrain-best"], env={"BINTALLY_PROGRESS_EVERY_S": "0"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    (out / "cli.log").write_text(result.output)
    return out
