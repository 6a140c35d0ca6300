"""benchmarks/accuracy.py's learning-curve table, from result files written the way the benchmark writes them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from accuracy import learning_curve


def result(limit: int | None, seed: int, ema_per_epoch: list[float], raw_per_epoch: list[float]) -> dict:
    history = [{"val": {"accuracy": e}, "val_raw": {"accuracy": r}} for e, r in zip(ema_per_epoch, raw_per_epoch, strict=True)]
    kept = {"accuracy": max(ema_per_epoch), "within_one": 0.8, "rmse": 1.2}
    preset = {"image_size": 160, "seed": seed} | ({"limit_train": limit} if limit else {})
    return {"preset": preset, "rows": [{"recipe": "best", "validation": kept, "history": history}]}


def test_runs_are_grouped_by_training_photos_with_each_seed_and_the_mean(tmp_path):
    # Tried: two seeds at 1,132 photos, one on all photos, and a 288 px run that is not part of the curve. Must hold:
    # sizes in order (all last), the EMA column is the kept model's, the raw column each run's best raw epoch (not
    # the raw at the EMA's epoch), the mean over seeds, and the 288 px run left out.
    files = {
        "accuracy-cpu-screen-image-size160-limit-train1132-seed0-best.json": result(1132, 0, [0.30, 0.35], [0.36, 0.31]),
        "accuracy-cpu-screen-image-size160-limit-train1132-seed1-best.json": result(1132, 1, [0.33, 0.31], [0.30, 0.32]),
        "accuracy-cpu-screen-image-size160-seed0-best.json": result(None, 0, [0.38, 0.40], [0.39, 0.37]),
        "accuracy-cpu-screen-image-size288-best.json": result(None, 0, [0.99], [0.99]),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    lines = learning_curve(tmp_path).splitlines()[2:]
    assert lines == [
        "| 1132 | 0 | 35.0% | 36.0% | 80.0% | 1.20 |",
        "| 1132 | 1 | 33.0% | 32.0% | 80.0% | 1.20 |",
        "| 1132 | mean of 2 | 34.0% | 34.0% | 80.0% | 1.20 |",
        "| all | 0 | 40.0% | 39.0% | 80.0% | 1.20 |",
        "| all | mean of 1 | 40.0% | 39.0% | 80.0% | 1.20 |",
    ]
