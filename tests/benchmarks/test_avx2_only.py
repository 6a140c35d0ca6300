"""benchmarks/avx2_only.sh: this CPU as an AVX2-only one, for every library in the command, on real silicon.

It is how the int8 claims for CPUs without VNNI were measured here, so its effect is tested, not assumed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bintally import hardware, storage
from bintally.data.images import decode_image
from bintally.data.manifest import read_manifest
from bintally.model.artifact import ONNX_INPUT, ONNX_OUTPUT, load_artifact
from bintally.model.predictor import onnx_session
from bintally.model.preprocess import prepare_batch
from bintally.model.quantize import Int8Config, photo_rows, quantize_graph

REPO = Path(__file__).resolve().parents[2]
CPUINFO = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
pytestmark = pytest.mark.skipif(
    "cpuid_fault" not in CPUINFO.split() or shutil.which("gcc") is None, reason="needs Linux CPUID faulting and gcc"
)

LOGITS = """
import sys, numpy as np
from bintally.model.artifact import ONNX_INPUT, ONNX_OUTPUT
from bintally.model.predictor import onnx_session
batch = np.load(sys.argv[1])
for graph in sys.argv[2:]:
    np.save(graph + ".avx2.npy", onnx_session(open(graph, "rb").read(), cpu_only=True).run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0])
"""


def avx2_only(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = ["bash", str(REPO / "benchmarks" / "avx2_only.sh"), sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path_factory, monkeypatch):
    """The script keeps its compiled library in the user's cache; the tests keep theirs out of it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "avx2-only-cache"))


def test_the_masking_library_is_built_once_and_kept(tmp_path):
    """Tried: two runs with an empty cache folder. Must hold: one library there after the first, the second
    loads that same file (not rebuilt: same modification time), and nothing else is left behind."""
    env = os.environ | {"XDG_CACHE_HOME": str(tmp_path)}
    first = avx2_only("-c", "pass", env=env)
    assert first.returncode == 0, first.stderr
    built = list((tmp_path / "bintally").iterdir())
    assert len(built) == 1 and built[0].name.startswith("avx2_only-") and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    second = avx2_only("-c", "pass", env=env)
    assert second.returncode == 0, second.stderr
    assert list((tmp_path / "bintally").iterdir()) == built and built[0].stat().st_mtime_ns == stamp


def test_the_libraries_and_bintally_see_avx2_and_nothing_wider():
    """Tried: a Python under the script asks numpy (which reads cpuid itself) and bintally what the CPU has.
    Must hold: AVX2 and FMA stay; AVX-512 and its VNNI are gone for numpy; bintally shows AVX2 alone and names
    what it hides."""
    code = (
        "import json; from numpy._core._multiarray_umath import __cpu_features__ as f; from bintally.hardware import cpu;"
        "print(json.dumps({'numpy': {k: f[k] for k in ('AVX2', 'FMA3', 'AVX512F', 'AVX512VNNI')}, 'flags': cpu().flags, "
        "'hidden': cpu().hidden}))"
    )
    run = avx2_only("-c", code)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["numpy"] == {"AVX2": True, "FMA3": True, "AVX512F": False, "AVX512VNNI": False}
    assert seen["flags"] == ["avx2"] and seen["hidden"] == [f for f in hardware.cpu().flags if f != "avx2"]


def test_7_bit_int8_weights_count_alike_with_avx2_kernels_and_8_bit_ones_need_vnni(exported, small_manifest, tmp_path):
    """Tried: the small model's int8 graphs with 7- and 8-bit weights, run on 16 real photos by this CPU's own
    kernels and under avx2_only.sh. Must hold: 7-bit weights give the same logits both ways; where this CPU has
    VNNI or AMX, 8-bit ones do not (AVX2's 16-bit sums of uint8 x int8 pairs overflow on them): the reason
    `hardware.int8_pays` lets auto take int8 on AVX2 alone only for 7-bit graphs."""
    artifact = load_artifact(exported)
    photos = [decode_image(storage.read_bytes(row.uri)) for row in read_manifest(small_manifest).split("val")[:16]]
    calibration, _, _ = photo_rows(artifact, Int8Config(calibration_photos=16))
    batch = prepare_batch(photos, artifact.spec.preprocess)
    np.save(tmp_path / "batch.npy", batch)
    native = {}
    for bits in (7, 8):
        graph = quantize_graph(f"{exported}/model.onnx", calibration, artifact.spec.preprocess, weight_bits=bits)
        (tmp_path / f"int8-{bits}.onnx").write_bytes(graph)
        native[bits] = onnx_session(graph, cpu_only=True).run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0]
    run = avx2_only("-c", LOGITS, str(tmp_path / "batch.npy"), *(str(tmp_path / f"int8-{bits}.onnx") for bits in (7, 8)))
    assert run.returncode == 0, run.stderr
    diff = {bits: np.abs(np.load(tmp_path / f"int8-{bits}.onnx.avx2.npy") - native[bits]).max() for bits in (7, 8)}
    assert diff[7] < 1e-5  # measured: 0.0
    if hardware.int8_pays(8):
        assert diff[8] > 1e-2  # measured: 0.77 on a logit
