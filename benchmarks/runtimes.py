"""ONNX Runtime against OpenVINO on the same fp32 and int8 ONNX graphs, side by side (batch 32, images/s).

    pip install openvino   # not a bintally dependency: this only decides whether it should become a backend
    python benchmarks/runtimes.py [--model RUN_DIR] [--repeats 5] [--seconds 2]

Both runtimes read `model.onnx` and `model.int8.onnx` (the QDQ graph of `bintally export --int8`); OpenVINO
compiles them for CPU with its THROUGHPUT hint. Each repeat measures every runtime and graph in turn.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov
from _model import benchmark_artifact
from _results import RESULTS, write_result
from inference import interleaved

from bintally.model.artifact import INT8_FILE, ONNX_FILE, load_artifact
from bintally.model.predictor import onnx_session

BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model artifact with model.int8.onnx (default: Lite0 at 224 px, packaged weights)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=RESULTS / "runtimes.json")
    args = parser.parse_args()
    started = time.monotonic()
    model = Path(benchmark_artifact(args.model))
    size = load_artifact(str(model)).spec.preprocess.size
    x = np.random.default_rng(0).standard_normal((BATCH, 3, size, size)).astype(np.float32)
    core = ov.Core()
    steps: dict[str, Callable[[], object]] = {}
    for graph in (ONNX_FILE, INT8_FILE):
        session = onnx_session(str(model / graph), cpu_only=True)  # as bintally serves it
        request = core.compile_model(str(model / graph), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"}).create_infer_request()
        steps[f"onnxruntime {graph}"] = lambda s=session: s.run(None, {"input": x})
        steps[f"openvino {graph}"] = lambda r=request: r.infer({0: x})
    rates = interleaved(steps, BATCH, args.seconds, args.repeats)  # type: ignore[arg-type]
    print(f"onnxruntime {ort.__version__}, openvino {ov.__version__}, batch {BATCH}")
    print("| runtime and graph | images/s |\n| --- | ---: |")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} |")
    write_result(
        args.json,
        {"batch": BATCH, "images_per_s": rates, "versions": {"onnxruntime": ort.__version__, "openvino": ov.__version__}},
        started,
        "runtimes.py",
    )


if __name__ == "__main__":
    main()
