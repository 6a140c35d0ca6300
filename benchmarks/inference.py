"""Inference throughput on this machine, and how far each path is from the compute limit.

    python benchmarks/inference.py [--model RUN_DIR] [--repeats 5] [--seconds 3] [--json runs/benchmarks/inference.json]

Paths, each at batch 1 and 32, in images/s (median over repeats):
  torch eager   the original's path: the PyTorch module on a preprocessed batch
  onnxruntime   the same network in ONNX Runtime on a preprocessed batch
  served path   what a request costs in `bintally serve` minus HTTP: JPEG bytes -> decode and
                preprocess (on a thread pool) -> ONNX Runtime predictor
Compute limit: model FLOPs per image x images/s, as a share of the fp32 matmul peak measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _model import benchmark_artifact, photo_bytes
from torch.utils.flop_counter import FlopCounterMode

from bintally.data.images import DEFAULT_MAX_PIXELS
from bintally.model.artifact import load_artifact
from bintally.model.predictor import load_predictor
from bintally.serve.inputs import decode_and_prepare

BATCHES = (1, 32)


def images_per_s(step: Callable[[], None], batch: int, seconds: float, repeats: int) -> float:
    """Median over `repeats` runs of at least `seconds` each (after one warm-up step)."""
    step()
    rates = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds or n == 0:
            step()
            n += 1
        rates.append(n * batch / elapsed)
    return statistics.median(rates)


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
    parser.add_argument("--json", default="runs/benchmarks/inference.json")
    args = parser.parse_args()

    artifact = load_artifact(benchmark_artifact(args.model))
    pp = artifact.spec.preprocess
    module = artifact.torch_model("cpu")
    predictor = load_predictor(artifact.path, "onnx")
    photos = photo_bytes(max(BATCHES))
    decode_pool = ThreadPoolExecutor(4)

    prepare_bytes = partial(decode_and_prepare, pp=pp, max_pixels=DEFAULT_MAX_PIXELS)

    def paths(batch: int) -> dict[str, Callable[[], None]]:
        x = np.stack([prepare_bytes(p) for p in photos[:batch]])
        xt = torch.from_numpy(x)

        def torch_eager():
            with torch.inference_mode():
                module(xt)

        def served():
            predictor.logits(np.stack(list(decode_pool.map(prepare_bytes, photos[:batch]))))

        return {"torch eager": torch_eager, "onnxruntime": lambda: predictor.logits(x), "served path": served}

    peak = matmul_peak_gflops(args.seconds, args.repeats)
    flops = model_gflops(module, pp.size)
    rows = []
    for batch in BATCHES:
        for name, step in paths(batch).items():
            rate = images_per_s(step, batch, args.seconds, args.repeats)
            rows.append({"path": name, "batch": batch, "images_per_s": rate, "share_of_peak": rate * flops / peak})

    print(
        f"model {artifact.spec.backbone} at {pp.size} px: {flops:.3f} GFLOPs/image; "
        f"fp32 matmul peak {peak:.1f} GFLOP/s; torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}"
    )
    print("| path | batch | images/s | % of matmul peak |\n| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['path']} | {r['batch']} | {r['images_per_s']:.1f} | {100 * r['share_of_peak']:.1f}% |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps(
            {"model_gflops": flops, "matmul_peak_gflops": peak, "rows": rows, "repeats": args.repeats, "seconds": args.seconds}, indent=2
        )
    )


if __name__ == "__main__":
    main()
