"""Which int8 graph keeps fp32's counts: quantisation variants of one model, on its validation photos.

    python benchmarks/int8_variants.py MODEL [--check-photos 500] [--variants all ...] [--json benchmarks/results/int8-variants-NAME.json]

Each variant is quantised from MODEL/model.onnx as `bintally export --int8` does (64 training photos for the
ranges) and compared with fp32 on the validation photos `export --int8` checks on (never the test split): same
count, accuracy of each. Speed: images/s at batch 32 of fp32 and of each variant, the graphs taking turns in
every repeat (medians). Variants: `all` (the default: every layer int8, MinMax ranges, 7-bit weights, biases
corrected for the weights' rounding), `no-bias-correction` (the same without that correction), `depthwise-fp32` (the
depthwise convolutions kept in float32), `head-fp32` (pooling and the count layer float32, so the logits are not
rounded to int8), `entropy` and `percentile` (every layer int8, ranges that clip outliers), `8-bit-weights` (weights in
[-127, 127], not [-64, 64]: CPUs without VNNI sum uint8 x int8 products in 16 bits, which these overflow; run this
script under benchmarks/avx2_only.sh to see those kernels' counts).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, write_result
from inference import interleaved

from bintally import storage
from bintally.model.artifact import ONNX_INPUT, ONNX_OUTPUT, load_artifact
from bintally.model.predictor import onnx_session
from bintally.model.quantize import Int8Config, compare, photo_rows, quantize_graph

VARIANTS: dict[str, dict] = {
    "all": {},
    "no-bias-correction": {"bias_correction": False},
    "depthwise-fp32": {"keep_fp32": ["depthwise"]},
    "head-fp32": {"keep_fp32": ["head"]},
    "entropy": {"ranges": "entropy"},
    "percentile": {"ranges": "percentile"},
    "8-bit-weights": {"weight_bits": 8},
}


def images_per_s(graphs: dict[str, bytes], size: int, repeats: int, seconds: float) -> dict[str, float]:
    batch = np.random.default_rng(0).standard_normal((32, 3, size, size), dtype=np.float32)
    sessions = {name: onnx_session(graph, cpu_only=True) for name, graph in graphs.items()}
    steps = {name: (lambda s=session: s.run([ONNX_OUTPUT], {ONNX_INPUT: batch})) for name, session in sessions.items()}
    return interleaved(steps, len(batch), seconds, repeats)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--check-photos", type=int, default=Int8Config().check_photos)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    started = time.monotonic()

    artifact = load_artifact(args.model)
    if artifact.onnx_path is None:
        raise SystemExit(f"{args.model} has no model.onnx: run `bintally export {args.model}` first")
    calibration, split, check = photo_rows(artifact, Int8Config(check_photos=args.check_photos))
    graphs = {"fp32": storage.read_bytes(artifact.onnx_path)}
    rows = []
    for name in args.variants:
        options = VARIANTS[name]
        graphs[name] = quantize_graph(artifact.onnx_path, calibration, artifact.spec.preprocess, **options)
        rows.append({"variant": name} | compare(artifact.onnx_path, graphs[name], check, artifact).model_dump())
    speed = images_per_s(graphs, artifact.spec.preprocess.size, args.repeats, args.seconds)

    print(f"{args.model}: {len(check)} {split} photos; batch 32 images/s, medians of {args.repeats} interleaved repeats")
    print(
        "| variant | same count as fp32 | accuracy | fp32 accuracy | int8 - fp32, 95% interval | images/s | vs fp32 |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for r in rows:
        r |= {"images_per_s": speed[r["variant"]], "speedup": speed[r["variant"]] / speed["fp32"]}
        low, high = r["accuracy_difference_interval"]
        print(
            f"| {r['variant']} | {r['agreement']:.1%} | {r['accuracy_int8']:.1%} | {r['accuracy_fp32']:.1%} "
            f"| {low * 100:+.1f} to {high * 100:+.1f} | {r['images_per_s']:.1f} | {r['speedup']:.2f}x |"
        )
    print(f"| fp32 | | | | | {speed['fp32']:.1f} | 1.00x |")
    out = args.json or RESULTS / f"int8-variants-{artifact.spec.name}.json"
    result = {"model": args.model, "split": split, "photos": len(check), "fp32_images_per_s": speed["fp32"], "rows": rows}
    write_result(out, result, started, "int8_variants.py")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
