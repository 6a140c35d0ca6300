"""The serve image, built and run for real with podman: SageMaker's `IMAGE serve` contract on port 8080 from
/opt/ml/model (unpacked there, or as model.tar.gz), on ONNX Runtime with no torch in the image."""

from __future__ import annotations

import tarfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serve.conftest import podman, readable_copy, wait_until_up

JPEG = {"content-type": "image/jpeg"}


def run_serving(image: str, model_dir: Path) -> tuple[str, str, float]:
    """Start the image's default command (`serve`) with `model_dir` at /opt/ml/model; (name, url, seconds to /readyz)."""
    name, port = f"bintally-test-{uuid.uuid4().hex[:8]}", free_port()
    started = time.monotonic()
    env = ["-e", f"SAGEMAKER_BIND_TO_PORT={port}"]
    run = podman("run", "-d", "--rm", "--name", name, "--network", "host", *env, "-v", f"{model_dir}:/opt/ml/model:ro", image)
    assert run.returncode == 0, run.stderr
    url = f"http://127.0.0.1:{port}"
    if wait_until_up(f"{url}/readyz", lambda: True):
        return name, url, time.monotonic() - started
    logs = podman("logs", name).stderr
    podman("rm", "-f", name)
    pytest.fail(f"the container was not ready in 120 s: {logs[-2000:]}")


def assert_serves(url: str, photos: dict[str, bytes]) -> None:
    for data in photos.values():
        logits = httpx.post(f"{url}/invocations", content=data, headers=JPEG)
        count = httpx.post(f"{url}/v1/count", content=data, headers=JPEG)
        assert logits.status_code == 200 and len(logits.json()) == 1 and len(logits.json()[0]) == 5
        assert count.status_code == 200 and count.json()["count"] in (1, 2, 3, 4, 5)
    assert httpx.get(f"{url}/ping").status_code == 200


ROOT = Path(__file__).resolve().parents[2]


def test_docker_builds_from_the_containerfile_with_the_same_ignore_file_as_podman():
    """docker reads only a Dockerfile unless told (-f) and only .dockerignore: without them it copies .venv, runs/
    and .git into the build. Must hold: every documented `docker build` names the Containerfile, and .dockerignore
    is .containerignore."""
    builds = [line for name in ("README.md", "Containerfile") for line in (ROOT / name).read_text().splitlines() if "docker build" in line]
    assert builds and all("-f Containerfile" in line for line in builds), builds
    assert (ROOT / ".dockerignore").read_text() == (ROOT / ".containerignore").read_text()


def test_the_serve_image_serves_a_model_mounted_at_opt_ml_model(serve_image, artifact_dir, photos, tmp_path):
    """Tried: the artifact folder mounted at /opt/ml/model, `podman run IMAGE` (its default command is `serve`).
    Must hold: /readyz within two minutes; /invocations and /v1/count answer real bin JPEGs; no torch in the image."""
    name, url, seconds = run_serving(serve_image, readable_copy(artifact_dir, tmp_path / "model"))
    try:
        assert_serves(url, photos)
        probe = podman("exec", name, "python3", "-c", "import importlib.util as u; print(u.find_spec('torch') is None)")
        assert probe.stdout.strip() == "True", probe.stderr
        print(f"ready {seconds:.1f} s after `podman run`")
    finally:
        podman("rm", "-f", name)


def test_the_serve_image_serves_a_model_tar_gz(serve_image, artifact_dir, photos, tmp_path):
    """Tried: /opt/ml/model holding only model.tar.gz, as SageMaker can hand a model over. Must hold: served the same."""
    model = readable_copy(artifact_dir, tmp_path / "model")
    packed = tmp_path / "packed"
    packed.mkdir()
    with tarfile.open(packed / "model.tar.gz", "w:gz") as archive:
        archive.add(model, arcname=".")
    for path in [packed, packed / "model.tar.gz"]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    name, url, _ = run_serving(serve_image, packed)
    try:
        assert_serves(url, photos)
    finally:
        podman("rm", "-f", name)
