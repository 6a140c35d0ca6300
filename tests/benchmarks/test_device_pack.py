"""The GPU machine's accuracy run, end to end on this CPU: pack real bins and weights, unpack and train from the
pack alone with benchmarks/device_accuracy.sh (as the device tool would run it), and check what comes back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from bintally.data.manifest import read_manifest
from bintally.model.backbones import create_imagenet_model

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_pack_trains_and_scores_the_same_split_from_its_own_files(tmp_path, small_manifest, abid_root):
    # Tried: pack the 80 real bins of a small manifest (no wheels: this Python has the packages), run the device
    # script on that folder with a 1-epoch setting. Must hold: the zip holds the bins byte for byte in the ABID
    # layout, the weights are the packaged ones in float16 without the ImageNet classifier, and the run rebuilds
    # the same test split from the unpacked bins and writes its result JSON where the device tool collects files.
    manifest_dir, pack, out = tmp_path / "manifest", tmp_path / "pack", tmp_path / "out"
    manifest_dir.mkdir()
    shutil.copy(small_manifest, manifest_dir / "manifest.parquet")
    packed = subprocess.run(
        [sys.executable, "benchmarks/device_pack.py", "--data", str(abid_root), "--out", str(pack)]
        + ["--manifest-dir", str(manifest_dir), "--no-wheels"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert packed.returncode == 0, packed.stderr
    rows = read_manifest(str(small_manifest)).rows
    with zipfile.ZipFile(pack / "abid.zip") as z:
        assert sorted(z.namelist()) == sorted([f"bin-images/{r.id}.jpg" for r in rows] + [f"metadata/{r.id}.json" for r in rows])
        assert z.read(f"bin-images/{rows[0].id}.jpg") == (abid_root / "bin-images" / f"{rows[0].id}.jpg").read_bytes()

    from safetensors.torch import load_file

    weights, packaged = load_file(str(pack / "lite0.safetensors")), create_imagenet_model("tf_efficientnet_lite0").state_dict()
    assert set(weights) == {k for k in packaged if not k.startswith("classifier.")}
    assert all(w.dtype == torch.float16 and torch.equal(w, packaged[k].half()) for k, w in weights.items())

    env = os.environ | {"PACK": str(pack), "OUT": str(out), "PYTHON": sys.executable}
    setting = ["--preset", "cpu-small", "--epochs", "1", "--image-size", "64", "--limit-train", "24", "--recipes", "best"]
    run = subprocess.run(["bash", "benchmarks/device_accuracy.sh", *setting], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "accuracy.json").read_text())
    assert result["preset"]["weights"] == str(pack / "lite0.safetensors")
    assert result["rows"][0]["test"]["n"] == sum(r.split == "test" for r in rows)
    assert "wrote" in (out / "accuracy.log").read_text()
