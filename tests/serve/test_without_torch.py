"""A serving install has no torch (the core install, the serve container): `bintally serve`, `predict` and
`reconcile` must run on ONNX Runtime alone. Each test runs the CLI in a fresh interpreter where importing
torch, torchvision, timm, optuna or ray fails, as it would where the `train` and `ray` extras are not installed."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import httpx

from tests.conftest import free_port
from tests.serve.conftest import wait_until_up

# Make the training extra's packages unimportable, as where they are not installed, then run `bintally ARGS...`.
NO_TORCH = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm", "optuna", "ray"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Absent())
from bintally.cli import main
sys.argv[0] = "bintally"
main()
"""


def bintally_without_torch(*args: str) -> list[str]:
    return [sys.executable, "-c", NO_TORCH, *args]


def test_serve_counts_real_photos_without_torch(artifact_dir, photos):
    """Tried: `bintally serve` with torch unimportable, on an artifact with model.onnx. Must hold: ready, and each
    real photo counted (200, the artifact's classes)."""
    port = free_port()
    proc = subprocess.Popen(bintally_without_torch("serve", artifact_dir, "--port", str(port)), stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_up(f"{url}/readyz", lambda: proc.poll() is None), proc.stderr.read() if proc.stderr else ""
        for data in photos.values():
            answer = httpx.post(f"{url}/v1/count", content=data, headers={"content-type": "image/jpeg"})
            assert answer.status_code == 200 and answer.json()["count"] in (1, 2, 3, 4, 5)
    finally:
        proc.terminate()
        proc.wait(30)


def test_predict_scores_a_folder_without_torch_and_training_commands_are_absent(artifact_dir, abid_root, tmp_path):
    """Tried: `bintally predict` on 3 real photos, then `bintally train --help`, then `predict --ray`, with torch
    and ray unimportable. Must hold: 3 scored rows; train is not a command there (it needs the `train` extra),
    said as a usage error; `--ray` fails with one line naming the `ray` extra and leaves the CSV as it was."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((abid_root / "bin-images").glob("*.jpg"))[:3]:
        shutil.copy(path, folder)
    out = tmp_path / "counts.csv"
    scored = subprocess.run(bintally_without_torch("predict", artifact_dir, str(folder), "--out", str(out)), capture_output=True, text=True)
    assert scored.returncode == 0, scored.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and all(r["count"] and not r["error"] for r in rows)
    training = subprocess.run(bintally_without_torch("train", "--help"), capture_output=True, text=True)
    assert training.returncode == 2 and "No such command 'train'" in training.stderr and "Traceback" not in training.stderr
    before = out.read_bytes()
    on_ray_args = bintally_without_torch("predict", artifact_dir, str(folder), "--out", str(out), "--ray")
    on_ray = subprocess.run(on_ray_args, capture_output=True, text=True)
    assert on_ray.returncode == 1 and "pip install 'bintally[ray]'" in on_ray.stderr and "Traceback" not in on_ray.stderr
    assert out.read_bytes() == before
