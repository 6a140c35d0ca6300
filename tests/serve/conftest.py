"""Serving fixtures: a real model artifact, real bin photos, real uvicorn servers on 127.0.0.1, and the serve
image built with podman."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from bintally.data.images import decode_image
from bintally.model.artifact import load_artifact, write_spec
from bintally.model.export import export_onnx
from bintally.serve.app import ServeConfig, create_app


def wait_until_up(url: str, alive: Callable[[], bool], timeout_s: float = 120) -> bool:
    """Poll `url` until it answers 200 (True), `alive()` turns false, or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/bintally:serve"
# scripts/container.sh writes this machine's podman settings here unless CONTAINERS_CONF names others.
CONTAINERS_CONF = ROOT / "build" / "container" / "containers.conf"


def podman_env() -> dict[str, str]:
    """This machine's podman settings once scripts/container.sh has written them (a fresh clone has none before
    the first build; podman refuses a CONTAINERS_CONF that names no file)."""
    return ({"CONTAINERS_CONF": str(CONTAINERS_CONF)} if CONTAINERS_CONF.exists() else {}) | dict(os.environ)


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True, env=podman_env())


@pytest.fixture(scope="session")
def serve_image() -> str:
    """`bash scripts/container.sh serve`, as the README says (a debootstrap base and a wheelhouse: no registry here)."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (scripts/system-deps.sh installs it)")
    built = subprocess.run(["bash", "scripts/container.sh", "serve"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return IMAGE


def readable_copy(artifact_dir: str, into: Path) -> Path:
    """The artifact copied where the image's non-root user can read it."""
    shutil.copytree(artifact_dir, into)
    for path in [into, *into.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return into


CLASSES = [1, 2, 3, 4, 5]
TEMPERATURE = 1.7
PHOTO_IDS = ["00585", "00588", "00589", "00594"]  # real ABID bins, read in place


@pytest.fixture(scope="session")
def photos(abid_root) -> dict[str, bytes]:
    return {bin_id: (abid_root / "bin-images" / f"{bin_id}.jpg").read_bytes() for bin_id in PHOTO_IDS}


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory, small_artifact, photos) -> str:
    """The shared small Lite0 artifact (see tests/conftest.py), copied, given a calibration temperature of
    TEMPERATURE (so every serving test runs with one) and exported to ONNX on real photos."""
    out = str(tmp_path_factory.mktemp("artifact") / "model")
    shutil.copytree(small_artifact, out)
    write_spec(out, load_artifact(out).spec.model_copy(update={"temperature": TEMPERATURE}))
    export_onnx(load_artifact(out), f"{out}/model.onnx", [decode_image(data) for data in photos.values()])
    return out


class RunningServer:
    """A uvicorn server in a thread on a free port of 127.0.0.1."""

    def __init__(self, cfg: ServeConfig, wrap: Callable[[ASGIApp], ASGIApp] | None = None):
        self.app = create_app(cfg)
        served = wrap(self.app) if wrap else self.app  # e.g. a test's probe around the whole app
        # Port 0: the kernel picks a free port, read back once the socket is bound.
        self._server = uvicorn.Server(uvicorn.Config(served, host="127.0.0.1", port=0, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.url = ""

    def start(self, wait_ready: bool = True, timeout_s: float = 120) -> RunningServer:
        """Returns once the server listens and, with `wait_ready`, once /readyz says 200."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._server.started:
                self.url = f"http://127.0.0.1:{self._server.servers[0].sockets[0].getsockname()[1]}"
                if not wait_ready or httpx.get(f"{self.url}/readyz").status_code == 200:
                    return self
            time.sleep(0.1)
        raise TimeoutError(f"the server was not {'ready' if wait_ready else 'listening'} in {timeout_s} s")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


@pytest.fixture(scope="session")
def start_server(artifact_dir) -> Iterator:
    """Starts servers of the test artifact with config overrides; stops them at the end of the session."""
    servers: list[RunningServer] = []

    def start(wait_ready: bool = True, wrap: Callable[[ASGIApp], ASGIApp] | None = None, **overrides) -> RunningServer:
        server = RunningServer(ServeConfig(**{"model": artifact_dir, **overrides}), wrap)
        servers.append(server)
        return server.start(wait_ready)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def open_server(start_server) -> RunningServer:
    """The test artifact on the default backend (ONNX), no API key."""
    return start_server()
