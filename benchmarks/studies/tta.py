"""Flip test-time augmentation, measured on the validation split: does averaging over flips help?

    python benchmarks/studies/tta.py MODEL MANIFEST                 # validation split (choosing happens here)
    python benchmarks/studies/tta.py MODEL MANIFEST --split test    # once, only for a variant validation chose

The artifact's network scores each photo as it is and flipped (left-right, top-bottom, both), the views'
logits averaged exactly as serving does once `bintally calibrate MODEL MANIFEST --flips ...` sets them
(`model.flips.FlipAveraged`). Prints accuracy, +-1 and RMSE per variant with the cost (forward passes per
photo), and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _benchmarks  # noqa: F401  (the maintained benchmarks' helpers, from the folder above)
import numpy as np
from _results import RESULTS, write_result
from torch.utils.data import DataLoader

from bintally.data.manifest import read_manifest
from bintally.evaluate.metrics import count_metrics
from bintally.hardware import hardware
from bintally.model.artifact import load_artifact
from bintally.model.calibration import softmax
from bintally.model.dataset import BinDataset
from bintally.model.inference import pick_device, predict_logits
from bintally.model.spec import Flip

VARIANTS: dict[str, list[Flip]] = {
    "plain": [],
    "+ left-right": ["left-right"],
    "+ top-bottom": ["top-bottom"],
    "+ both": ["left-right", "top-bottom"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("manifest")
    parser.add_argument("--split", default="val")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/tta-MODEL-SPLIT.json)")
    args = parser.parse_args()

    started = time.monotonic()
    artifact = load_artifact(args.model)
    spec, device = artifact.spec, pick_device(args.device)
    rows = read_manifest(args.manifest).split(args.split)
    loader = DataLoader(BinDataset(rows, spec.preprocess), batch_size=64, num_workers=args.workers)
    classes, results = np.asarray(spec.classes), {}
    for variant, flips in VARIANTS.items():
        logits, counts = predict_logits(artifact.torch_model(str(device), flips), loader, device)
        probabilities = softmax(logits, spec.temperature)
        m = count_metrics(counts, classes[probabilities.argmax(axis=1)], probabilities, spec.classes)
        results[variant] = {"passes": 1 + len(flips), **{k: m[k] for k in ("accuracy", "within_one", "rmse", "mae", "per_count")}}
    lines = ["| variant | forward passes | accuracy | +-1 | RMSE |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {v} | {r['passes']} | {r['accuracy']:.1%} | {r['within_one']:.1%} | {r['rmse']:.3f} |" for v, r in results.items()]
    print(f"{spec.name} {spec.version} on the {args.split} split ({len(counts):,} bins), {hardware().describe()}")
    print("\n".join(lines))
    out = args.out or RESULTS / f"tta-{spec.name}-{args.split}.json"
    result = {
        "model": {"name": spec.name, "version": spec.version, "path": args.model},
        "manifest": args.manifest,
        "split": args.split,
        "bins": len(counts),
        "variants": results,
        "table": "\n".join(lines),
    }
    write_result(out, result, started, "studies/tta.py")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
