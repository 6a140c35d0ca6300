"""Inference throughput on this machine, and how far each path is from the compute limit.

    python benchmarks/inference.py [--model RUN_DIR] [--repeats 5] [--seconds 3] [--json benchmarks/results/inference.json]

Paths, each at batch 1 and 32, in images/s (median over repeats):
  torch eager   the original's path: the PyTorch module on a preprocessed batch
  onnxruntime   the same network in ONNX Runtime on a preprocessed batch (fp32, and the int8 graph
                of `bintally export --int8` where the artifact has one)
  served path   what a request costs in `bintally serve` minus HTTP: JPEG bytes -> decode and
                preprocess (on a thread pool) -> ONNX Runtime predictor (fp32 and int8)
Compute limit: model FLOPs per image x images/s, as a share of the fp32 matmul peak measured here.
Each repeat measures every path in turn, so the paths share the machine's noise.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _model import benchmark_artifact, photo_bytes
from _results import RESULTS, write_result
from torch.utils.flop_counter import FlopCounterMode

from bintally.data.images import DEFAULT_MAX_PIXELS
from bintally.hardware import hardware
from bintally.model.artifact import load_artifact
from bintally.model.predictor import Predictor, load_predictor
from bintally.serve.inputs import decode_and_prepare

BATCHES = (1, 32)


def rate(step: Callable[[], None], batch: int, seconds: float) -> float:
    """Images/s over at least `seconds` of back-to-back steps."""
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n == 0:
        step()
        n += 1
    return n * batch / elapsed


def images_per_s(step: Callable[[], None], batch: int, seconds: float, repeats: int) -> float:
    """Median over `repeats` runs of at least `seconds` each (after one warm-up step)."""
    step()
    return statistics.median(rate(step, batch, seconds) for _ in range(repeats))


def interleaved(steps: dict[str, Callable[[], None]], batch: int, seconds: float, repeats: int) -> dict[str, float]:
    """Each step's median images/s, the steps taking turns within every repeat."""
    for step in steps.values():
        step()
    runs = [{name: rate(step, batch, seconds) for name, step in steps.items()} for _ in range(repeats)]
    return {name: statistics.median(run[name] for run in runs) for name in steps}


def matmul_peak_gflops(seconds: float, repeats: int, n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return images_per_s(lambda: torch.mm(a, b), 1, seconds, repeats) * 2 * n**3 / 1e9


def model_gflops(model: torch.nn.Module, size: int) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model artifact (default: Lite0 at 224 px from packaged weights)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per repeat")
    parser.add_argument("--json", type=Path, default=RESULTS / "inference.json")
    args = parser.parse_args()
    started = time.monotonic()

    artifact = load_artifact(benchmark_artifact(args.model))
    pp = artifact.spec.preprocess
    module = artifact.torch_model("cpu")
    predictors = {"fp32": load_predictor(artifact.path, precision="fp32")}
    if artifact.int8_onnx_path:
        predictors["int8"] = load_predictor(artifact.path, precision="int8")
    photos = photo_bytes(max(BATCHES))
    decode_pool = ThreadPoolExecutor(4)

    prepare_bytes = partial(decode_and_prepare, pp=pp, max_pixels=DEFAULT_MAX_PIXELS)

    def paths(batch: int) -> dict[str, Callable[[], None]]:
        x = np.stack([prepare_bytes(p) for p in photos[:batch]])
        xt = torch.from_numpy(x)

        def torch_eager():
            with torch.inference_mode():
                module(xt)

        def served(predictor: Predictor) -> None:
            predictor.logits(np.stack(list(decode_pool.map(prepare_bytes, photos[:batch]))))

        steps = {"torch eager": torch_eager}
        steps |= {f"onnxruntime {p}": partial(predictor.logits, x) for p, predictor in predictors.items()}
        steps |= {f"served path {p}": partial(served, predictor) for p, predictor in predictors.items()}
        return steps

    peak = matmul_peak_gflops(args.seconds, args.repeats)
    flops = model_gflops(module, pp.size)
    rows = []
    for batch in BATCHES:
        steps = paths(batch)
        rates = interleaved(steps, batch, args.seconds, args.repeats)
        for name, rate in rates.items():
            fp32 = rates[name.replace("int8", "fp32")]
            row = {"path": name, "batch": batch, "images_per_s": rate, "share_of_peak": rate * flops / peak}
            rows.append(row | ({"int8_speedup": rate / fp32} if "int8" in name else {}))

    machine = hardware()
    print(f"{machine.describe()}; torch threads {torch.get_num_threads()}, onnxruntime {ort.__version__}")
    print(f"model {artifact.spec.backbone} at {pp.size} px: {flops:.3f} GFLOPs/image; fp32 matmul peak {peak:.1f} GFLOP/s")
    print("| path | batch | images/s | int8 / fp32 | % of fp32 matmul peak |\n| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        speedup = f"{r['int8_speedup']:.2f}x" if "int8_speedup" in r else ""
        print(f"| {r['path']} | {r['batch']} | {r['images_per_s']:.1f} | {speedup} | {100 * r['share_of_peak']:.1f}% |")
    result = {"model_gflops": flops, "matmul_peak_gflops": peak, "rows": rows, "repeats": args.repeats, "seconds": args.seconds}
    write_result(args.json, result | {"cpu_flags": machine.flags}, started, "inference.py")


if __name__ == "__main__":
    main()
