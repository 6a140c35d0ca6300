"""An ensemble of trained models, measured on the validation split: does averaging their probabilities help, and
what does it cost?

    python benchmarks/studies/ensemble.py MANIFEST MODEL MODEL [MODEL...]                # validation split (choosing happens here)
    python benchmarks/studies/ensemble.py MANIFEST MODEL MODEL ... --split test          # once, only for an ensemble validation chose

Each model scores the split in float32 (as served); its calibrated probabilities (its own temperature) over
the benchmark's counts 1-5 are averaged with equal weights (a model trained on more counts has its other
counts' probability dropped and the rest renormalised). Reported: each model alone and the ensemble (accuracy,
+-1, RMSE), and the cost: the seconds each model's forward passes took over the split, measured in this run,
so the ensemble's photos/s is one over their sum. Writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from _benchmarks import models_on_a_split  # first: the maintained benchmarks' helpers, from the folder above
from _results import RESULTS, write_result
from torch.utils.data import DataLoader

from bintally.data.manifest import read_manifest
from bintally.evaluate.metrics import count_metrics
from bintally.hardware import hardware
from bintally.model.artifact import load_artifact
from bintally.model.calibration import softmax
from bintally.model.dataset import BinDataset
from bintally.model.inference import pick_device, predict_logits

COUNTS = [1, 2, 3, 4, 5]


def member_probabilities(model: str, rows: list, device: str, workers: int) -> tuple[np.ndarray, np.ndarray, float]:
    """One model's probabilities over COUNTS [N, 5], the recorded counts [N], and the seconds its passes took."""
    artifact = load_artifact(model)
    spec, target = artifact.spec, pick_device(device)
    loader = DataLoader(BinDataset(rows, spec.preprocess), batch_size=64, num_workers=workers)
    started = time.perf_counter()
    logits, counts = predict_logits(artifact.torch_model(str(target)), loader, target)
    seconds = time.perf_counter() - started
    keep = [spec.classes.index(c) for c in COUNTS]
    probabilities = softmax(logits, spec.temperature)[:, keep]
    return probabilities / probabilities.sum(axis=1, keepdims=True), counts, seconds


def scored(probabilities: np.ndarray, counts: np.ndarray) -> dict:
    m = count_metrics(counts, np.asarray(COUNTS)[probabilities.argmax(axis=1)], probabilities, COUNTS)
    return {k: m[k] for k in ("accuracy", "within_one", "rmse", "mae", "per_count")}


def main() -> None:
    parser = models_on_a_split(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/ensemble-SPLIT.json)")
    args = parser.parse_args()

    started = time.monotonic()
    rows = [r for r in read_manifest(args.manifest).split(args.split) if r.count in COUNTS]
    members = {m: member_probabilities(m, rows, args.device, args.workers) for m in args.models}
    counts = next(iter(members.values()))[1]
    results = {Path(m).name: scored(p, counts) | {"seconds": s} for m, (p, _, s) in members.items()}
    total = sum(s for _, _, s in members.values())
    results["ensemble"] = scored(np.mean([p for p, _, _ in members.values()], axis=0), counts) | {"seconds": total}
    lines = ["| model | accuracy | +-1 | RMSE | photos/s (fp32 PyTorch) |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['accuracy']:.1%} | {r['within_one']:.1%} | {r['rmse']:.2f} | {len(rows) / r['seconds']:.1f} |")
    print(f"{len(rows)} {args.split} bins; {hardware().describe()}")
    print("\n".join(lines))
    out = args.out or RESULTS / f"ensemble-{args.split}.json"
    result = {"split": args.split, "bins": len(rows), "models": args.models, "results": results, "table": lines}
    write_result(out, result, started, "studies/ensemble.py")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
