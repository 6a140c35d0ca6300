"""compose.yaml, read and run with podman-compose: the whole file resolves, and its `serve` service, brought up as
the README says, serves a mounted model on the published port. The whole file up (PostgreSQL and tune workers of
the full image, ~7 GB, which CI does not build) is marked `full_image`: `pytest -m full_image` after
`bash scripts/container.sh full`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serve.conftest import ROOT, podman, podman_env, readable_copy, wait_until_up
from tests.tune.conftest import TINY_SPACE

COMPOSE = [sys.executable, "-m", "podman_compose", "--podman-args=--runtime runc", "-f", str(ROOT / "compose.yaml")]


def compose(project: str, env: dict[str, str], *args: str, files: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    extra = [arg for f in files for arg in ("-f", f)]
    return subprocess.run([*COMPOSE, *extra, "-p", project, *args], capture_output=True, text=True, env=podman_env() | env, timeout=300)


def left_containers(project: str) -> list[dict]:
    listed = podman("ps", "-a", "--format", "json")
    return [c for c in json.loads(listed.stdout or "[]") if any(project in n for n in c.get("Names", []))]


def test_the_whole_file_resolves_with_its_defaults_and_overrides(tmp_path):
    """Tried: `podman-compose config` with the defaults, then with every documented variable set. Must hold: the
    four services; the tune workers on the study in PostgreSQL (the password interpolated), after the manifest;
    each variable lands where the file says."""
    plain = compose("bintally-config", {}, "config")
    assert plain.returncode == 0, plain.stderr
    env = {
        "BINTALLY_MODEL": str(tmp_path),
        "BINTALLY_PORT": "18123",
        "BINTALLY_ABID": str(tmp_path / "abid"),
        "POSTGRES_PASSWORD": "s3cret",
        "BINTALLY_TUNE_TRIALS": "7",
        "BINTALLY_STUDY": "night-shift",
    }
    resolved = compose("bintally-config", env, "config")
    assert resolved.returncode == 0, resolved.stderr
    text = resolved.stdout
    for service in ("serve:", "postgres:", "manifest:", "tune:"):
        assert f"\n  {service}" in text
    assert "postgresql://bintally:s3cret@postgres:5432/bintally" in text and "night-shift" in text and "'7'" in text
    assert f"{tmp_path}:/opt/ml/model:ro" in text and "18123:8080" in text and f"{tmp_path / 'abid'}:/abid:ro" in text


def test_compose_up_serve_answers_on_the_published_port(serve_image, artifact_dir, photos, tmp_path):
    """Tried: `podman-compose up -d serve` with BINTALLY_MODEL naming an artifact folder and BINTALLY_PORT a free
    port (a bridge network, the port published, as compose does: not the host network). Must hold: /readyz, then a
    count for a real bin JPEG posted to /v1/count; `down` removes the container."""
    project, port = f"bintally-test-{uuid.uuid4().hex[:6]}", free_port()
    env = {"BINTALLY_MODEL": str(readable_copy(artifact_dir, tmp_path / "model")), "BINTALLY_PORT": str(port)}
    up = compose(project, env, "up", "-d", "serve")
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_up(f"{url}/readyz", lambda: True), compose(project, env, "logs", "serve").stdout[-3000:]
        answer = httpx.post(f"{url}/v1/count", content=next(iter(photos.values())), headers={"content-type": "image/jpeg"})
        assert answer.status_code == 200 and answer.json()["count"] in (1, 2, 3, 4, 5)
    finally:
        down = compose(project, env, "down")
    assert down.returncode == 0, down.stderr[-3000:]
    assert not left_containers(project)


# The override a user would write to try the whole file quickly: tune's trials tiny (2 epochs, 64 px, head only).
TINY_TUNE = """
services:
  tune:
    command: ["tune", "/home/bintally/manifest.parquet", "--storage", "postgresql://bintally:${POSTGRES_PASSWORD}@postgres:5432/bintally",
              "--study", "shared", "--trials", "${BINTALLY_TUNE_TRIALS}", "--out", "/home/bintally/tune",
              "--space", "/space/tiny.yaml", "--pruner", "none"]
    volumes: ["${BINTALLY_ABID}:/abid:ro", "work:/home/bintally", "${TINY_SPACE}:/space/tiny.yaml:ro"]
"""


@pytest.fixture(scope="module")
def full_image() -> str:
    if podman("image", "exists", "localhost/bintally:full").returncode != 0:
        pytest.fail("localhost/bintally:full is not built: bash scripts/container.sh full (~7 GB, ~7 min)")
    return "localhost/bintally:full"


@pytest.fixture(scope="module")
def postgres_image() -> str:
    """`bash scripts/container.sh postgres`: Debian's PostgreSQL on the local base (no registry for postgres:16)."""
    built = subprocess.run(["bash", "scripts/container.sh", "postgres"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return "localhost/bintally-postgres:15"


def state(container: str) -> tuple[str, int]:
    shown = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container).stdout.split()
    return (shown[0], int(shown[1])) if len(shown) == 2 else ("missing", -1)


@pytest.mark.full_image
@pytest.mark.timeout(1500)  # the images are built first (minutes each), then 4 trials
def test_compose_up_runs_one_study_in_postgres_shared_by_two_tune_workers(
    serve_image, full_image, postgres_image, artifact_dir, photos, abid_root, tmp_path
):
    """Tried: `podman-compose up -d` of the whole file with an override making the trials tiny, PostgreSQL from
    the local image, 2 tune workers asked for 4 trials between them, on a 150-bin ABID root. Must hold: the
    manifest service exits 0; both workers exit 0 having each finished a trial; the study in PostgreSQL holds
    exactly 4 complete trials; serve answers a real bin JPEG meanwhile; `down -v` leaves no container."""
    abid = tmp_path / "abid"
    for folder, suffix in (("bin-images", ".jpg"), ("metadata", ".json")):
        (abid / folder).mkdir(parents=True)
        for photo in sorted((abid_root / "bin-images").glob("*.jpg"))[:150]:
            shutil.copy(abid_root / folder / f"{photo.stem}{suffix}", abid / folder)
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    (tmp_path / "tiny-tune.yaml").write_text(TINY_TUNE)
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    project, port = f"bintally-study-{uuid.uuid4().hex[:6]}", free_port()
    env = {
        "BINTALLY_MODEL": str(readable_copy(artifact_dir, tmp_path / "model")),
        "BINTALLY_PORT": str(port),
        "BINTALLY_ABID": str(abid),
        "POSTGRES_IMAGE": postgres_image,
        "POSTGRES_PASSWORD": uuid.uuid4().hex,
        "BINTALLY_TUNE_WORKERS": "2",
        "BINTALLY_TUNE_TRIALS": "4",
        "TINY_SPACE": str(tmp_path / "tiny.yaml"),
    }
    files = (str(ROOT / "compose.yaml"), str(tmp_path / "tiny-tune.yaml"))
    up = compose(project, env, "up", "-d", files=files)
    assert up.returncode == 0, up.stderr[-3000:]
    workers = [f"{project}_tune_{i}" for i in (1, 2)]
    try:
        assert wait_until_up(f"http://127.0.0.1:{port}/readyz", lambda: True)
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/count", content=photos["00585"], headers={"content-type": "image/jpeg"})
        assert answer.status_code == 200 and answer.json()["count"] in (1, 2, 3, 4, 5)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and any(state(w)[0] != "exited" for w in workers):
            time.sleep(2)
        logs = {w: (shown := podman("logs", w)).stdout + shown.stderr for w in workers}
        assert state(f"{project}_manifest_1") == ("exited", 0)
        assert [state(w) for w in workers] == [("exited", 0)] * 2, logs
        assert all(" complete " in log for log in logs.values()), logs  # each worker finished a trial of the study
        count = podman("exec", f"{project}_postgres_1", "psql", "-h", "/tmp", "-U", "bintally", "-d", "bintally", "-tAc",
                       "SELECT count(*) FROM trials WHERE state = 'COMPLETE'")  # fmt: skip
        assert count.stdout.strip() == "4", count.stdout + count.stderr
    finally:
        down = compose(project, env, "down", "-v", files=files)
    assert down.returncode == 0, down.stderr[-3000:]
    assert not left_containers(project)


# A service whose container cannot be created (its image is missing and never pulled) and one waiting on it.
UNCREATABLE = """
services:
  first:
    image: localhost/bintally-missing:none
    pull_policy: never
  second:
    image: localhost/bintally-missing:none
    pull_policy: never
    depends_on:
      first: {condition: service_completed_successfully}
"""


def test_container_sh_up_gives_up_with_a_reason_when_a_container_cannot_be_created(tmp_path):
    """Tried: `bash scripts/container.sh up` on a compose file whose first service's image is missing (podman-compose
    itself then waits forever for that container to finish), with BINTALLY_COMPOSE_TIMEOUT=10. Must hold: the script
    gives up within the limit (exit 124) and says why and what to do."""
    (tmp_path / "compose.yaml").write_text(UNCREATABLE)
    project = f"bintally-uncreatable-{uuid.uuid4().hex[:6]}"
    env = podman_env() | {
        "COMPOSE_FILE": str(tmp_path / "compose.yaml"),
        "COMPOSE_PROJECT_NAME": project,
        "BINTALLY_COMPOSE_TIMEOUT": "10",
        "BINTALLY_CONTAINER_WORK": str(tmp_path / "work"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # podman-compose, installed with bintally[dev]
    }
    started = time.monotonic()
    try:
        up = subprocess.run(["bash", "scripts/container.sh", "up"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    finally:
        down = [sys.executable, "-m", "podman_compose", "--podman-args=--runtime runc", "down"]  # the file and project from env
        subprocess.run(down, capture_output=True, env=env, timeout=120)
    assert up.returncode == 124 and time.monotonic() - started < 60, up.stderr[-3000:]
    assert "podman-compose up did not finish in 10 s" in up.stderr and "image not known" in up.stderr, up.stderr[-3000:]
    assert not left_containers(project)
