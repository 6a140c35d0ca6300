"""What int8 costs in accuracy: a model's fp32 and int8 ONNX graphs scored on the same split, side by side.

    python benchmarks/precision.py MODEL MANIFEST [--split test] [--json benchmarks/results/precision-NAME-SPLIT.json]

MODEL needs model.int8.onnx (`bintally export MODEL --int8`: calibrated on training photos, checked on
validation photos). Prints accuracy, +-1, RMSE and MAE for each precision, how often they give the same count, and
the accuracy difference with the 95% interval of the paired difference (what chance alone allows on these photos).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, write_result

from bintally import storage
from bintally.accuracy import paired_accuracy_difference
from bintally.data.images import decode_image
from bintally.data.manifest import read_manifest
from bintally.evaluate.metrics import metrics_from_logits, scalars
from bintally.model.predictor import Predictor, load_predictor
from bintally.model.preprocess import prepare_batch

BATCH = 32


def split_logits(predictor: Predictor, uris: list[str]) -> np.ndarray:
    batches = []
    for start in range(0, len(uris), BATCH):
        photos = [decode_image(storage.read_bytes(u)) for u in uris[start : start + BATCH]]
        batches.append(predictor.logits(prepare_batch(photos, predictor.spec.preprocess)))
    return np.concatenate(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("manifest")
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    started = time.monotonic()

    predictors = {p: load_predictor(args.model, precision=p) for p in ("fp32", "int8")}
    classes = predictors["fp32"].spec.classes
    rows = [r for r in read_manifest(args.manifest).split(args.split) if r.count in set(classes)]
    counts = [r.count for r in rows]
    logits = {p: split_logits(predictor, [r.uri for r in rows]) for p, predictor in predictors.items()}
    metrics = {p: scalars(metrics_from_logits(lg, counts, classes)) for p, lg in logits.items()}
    agreement = float((logits["fp32"].argmax(1) == logits["int8"].argmax(1)).mean())
    correct = {p: np.array(classes)[lg.argmax(1)] == np.array(counts) for p, lg in logits.items()}
    difference, low, high = paired_accuracy_difference(correct["fp32"], correct["int8"])

    print(f"{args.model}, {args.split} split of {args.manifest}: {len(rows):,} bins")
    print("| precision | accuracy | +-1 | RMSE | MAE |\n| --- | ---: | ---: | ---: | ---: |")
    for p, m in metrics.items():
        print(f"| {p} | {m['accuracy']:.1%} | {m['within_one']:.1%} | {m['rmse']:.2f} | {m['mae']:.2f} |")
    print(
        f"same count from both: {agreement:.1%}; int8 - fp32 accuracy: {difference * 100:+.1f} points "
        f"(95% interval of the paired difference {low * 100:+.1f} to {high * 100:+.1f})"
    )
    name = predictors["fp32"].spec.name
    out = args.json or RESULTS / f"precision-{name}-{args.split}.json"
    result = {"model": args.model, "manifest": args.manifest, "split": args.split, "bins": len(rows)}
    result |= {"metrics": metrics, "agreement": agreement, "accuracy_difference": [difference, low, high]}
    result |= {"int8_check": predictors["int8"].spec.int8.model_dump()}
    write_result(out, result, started, "precision.py")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
