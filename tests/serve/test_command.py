"""`bintally serve` itself, as a user starts it: a model trained with --enhance, served by the command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile

import httpx
import pytest
from typer.testing import CliRunner

from bintally.cli import app
from bintally.data.images import decode_image
from bintally.model.artifact import load_artifact
from bintally.model.predictor import load_predictor
from bintally.model.preprocess import prepare_batch
from tests.conftest import free_port
from tests.serve.conftest import wait_until_up


@pytest.fixture(scope="module")
def enhanced_run(small_manifest, tmp_path_factory) -> str:
    """A one-epoch model trained with --enhance (UnsharpMask before everything), by the CLI."""
    run = str(tmp_path_factory.mktemp("enhanced") / "run")
    args = ["--image-size", "64", "--batch-size", "16", "--workers", "0", "--epochs", "1", "--strategy", "head", "--enhance"]
    result = CliRunner().invoke(app, ["train", str(small_manifest), "--out", run, *args])
    assert result.exit_code == 0, result.output
    return run


def test_the_serve_command_serves_an_enhanced_model_with_its_own_preprocessing(enhanced_run, photos):
    """`bintally serve RUN --port P` in its own process: ready within two minutes, /v1/count answers, and its
    probabilities are the model's on the enhanced photo (as in training), not on the plain one; SIGTERM shuts it
    down gracefully."""
    spec = load_artifact(enhanced_run).spec
    assert spec.preprocess.enhance is not None, "--enhance must reach the artifact's preprocessing"
    photo = photos["00585"]
    torch_model = load_predictor(enhanced_run, "torch")
    want = torch_model.score(torch_model.logits(prepare_batch([decode_image(photo)], spec.preprocess))[0]).probabilities
    plain = spec.preprocess.model_copy(update={"enhance": None})
    unenhanced = torch_model.score(torch_model.logits(prepare_batch([decode_image(photo)], plain))[0]).probabilities

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bintally", "serve", enhanced_run, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_up(f"{url}/readyz", lambda: proc.poll() is None), "the server exited or was not ready in 2 minutes"
        answer = httpx.post(f"{url}/v1/count", content=photo, headers={"content-type": "image/jpeg"}, timeout=30).json()
        assert answer["probabilities"] == pytest.approx(want, abs=1e-4)
        assert max(abs(answer["probabilities"][c] - unenhanced[c]) for c in want) > 1e-3
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"Finished server process" in err


@pytest.mark.parametrize("layout", ["model.tar.gz", "unpacked-in-a-subfolder"])
def test_a_sagemaker_model_is_served_on_the_port_sagemaker_names(artifact_dir, photos, tmp_path, layout):
    """Tried: the artifact as SageMaker hands it over: MODEL_DIR/model.tar.gz, or that archive (its members under
    run/) unpacked into MODEL_DIR, as SageMaker hosting does; `bintally serve MODEL_DIR` with SAGEMAKER_BIND_TO_PORT,
    SAGEMAKER_MODEL_SERVER_WORKERS and _TIMEOUT set and no options, then SIGTERM. Must hold: /ping 200 on that
    port; /readyz shows the workers and timeout; /invocations answers [[5 logits]]; no unpacked copy is left."""
    model_dir = tmp_path / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    names = ("model.json", "model.safetensors", "model.onnx")
    if layout == "model.tar.gz":
        with tarfile.open(model_dir / "model.tar.gz", "w:gz") as archive:
            for name in names:
                archive.add(f"{artifact_dir}/{name}", arcname=name)
    else:
        (model_dir / "run").mkdir()
        for name in names:
            shutil.copy(f"{artifact_dir}/{name}", model_dir / "run")
    port, tmp = free_port(), tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30"}
    env["TMPDIR"] = str(tmp)  # where the archive is unpacked
    proc = subprocess.Popen([sys.executable, "-m", "bintally", "serve", str(model_dir)], env=env, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_up(f"{url}/ping", lambda: proc.poll() is None), proc.stderr.read().decode() if proc.stderr else ""
        ready = httpx.get(f"{url}/readyz").json()
        assert ready["workers"] == 2 and ready["timeout_s"] == 30
        answer = httpx.post(f"{url}/invocations", content=photos["00585"], headers={"content-type": "image/jpeg"})
        assert answer.status_code == 200 and len(answer.json()) == 1 and len(answer.json()[0]) == 5
    finally:
        proc.terminate()
        proc.wait(30)
    assert not list(tmp.glob("bintally-model-*"))


@pytest.mark.parametrize(
    "thresholds, status, says",
    [
        (["--accept-at", "0.3", "--mismatch-at", "0.4"], 2, "must be below accept_at (0.3)"),  # a usage error
        (["--accept-at", "0.03"], 1, "do not fit"),  # below the artifact's own mismatch threshold (0.05)
    ],
    ids=["with-each-other", "with-the-artifact"],
)
def test_thresholds_that_cannot_go_together_are_refused_at_startup(small_artifact, thresholds, status, says):
    """Tried: `bintally serve MODEL` with thresholds that cannot make a policy. Must hold: it exits at once with
    the reason (never serves /readyz 503 'still loading' forever)."""
    command = [sys.executable, "-m", "bintally", "serve", small_artifact, "--port", str(free_port()), *thresholds]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == status and says in " ".join(done.stderr.replace("│", " ").split()), done.stderr


def test_serve_exits_0_after_a_graceful_sigterm(artifact_dir):
    """Tried: `bintally serve MODEL --port P` ready, then SIGTERM (what a container runtime sends to stop it). Must
    hold: uvicorn shuts down gracefully and the process exits 0, not -15 (which a runtime reports as killed)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bintally", "serve", artifact_dir, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        assert wait_until_up(f"http://127.0.0.1:{port}/readyz", lambda: proc.poll() is None), "the server exited or was not ready"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert b"Finished server process" in err
    assert proc.returncode == 0, err.decode()[-3000:]
