"""Batch scoring throughput: `bintally predict` in one process beside `--ray` with 1 and 2 model actors, on the
same real photos, in the same run.

    python benchmarks/predict_scale.py [--model RUN_DIR] [--photos 512] [--repeats 3] [--precision fp32]

Each repeat runs every path once, in turn (so drift on a noisy machine hits them alike), into a fresh output.
Reported per path, as the median over repeats: the whole call's seconds, and the steady rate (photos/s between
the first and the last batch written: start-up apart). Ray's start (`ray.init` of a local cluster) is timed once,
apart; its per-photo overhead is the difference of the steady per-photo times against one process. The sizing
note turns the measured per-core rate into cores for a one-hour audit of 1M photos.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray
from _model import ABID, benchmark_artifact
from _results import RESULTS, write_result

from bintally.hardware import hardware
from bintally.predict import PredictConfig, predict
from bintally.scoring.on_ray import RayConfig

AUDIT_PHOTOS, AUDIT_SECONDS = 1_000_000, 3600


def photo_folder(n: int) -> str:
    """n real bin photos of the sample, linked into a folder (read in place)."""
    folder = tempfile.mkdtemp(prefix="bintally-scale-")
    for p in sorted((ABID / "bin-images").glob("*.jpg"))[:n]:
        os.symlink(p, os.path.join(folder, p.name))
    return folder


def run_once(model: str, folder: str, precision: str, actors: int | None) -> dict:
    """One scoring of the folder: total seconds and the steady rate between the first and the last batch."""
    out = os.path.join(tempfile.mkdtemp(prefix="bintally-scale-out-"), "predictions.csv")
    ticks: list[tuple[float, int]] = []
    cfg = PredictConfig(
        model=model,
        inputs=[folder],
        out=out,
        precision=precision,
        # Half a CPU each, so two actors on 2 cores still leave reading tasks room (scoring/on_ray.py refuses otherwise).
        ray=RayConfig(address="auto", actors=actors, cpus_per_actor=0.5) if actors else None,
    )
    started = time.perf_counter()
    summary = predict(cfg, on_progress=lambda done, total: ticks.append((time.perf_counter(), done)))
    seconds = time.perf_counter() - started
    assert summary.failed == 0 and summary.scored == summary.found, summary
    (t0, n0), (t1, n1) = ticks[0], ticks[-1]
    return {"seconds": seconds, "steady_photos_per_s": (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model artifact (default: Lite0 at 224 px from packaged weights)")
    parser.add_argument("--photos", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "int8"])
    parser.add_argument("--json", type=Path, default=RESULTS / "predict-scale.json")
    args = parser.parse_args()

    started = time.monotonic()
    model, folder = benchmark_artifact(args.model), photo_folder(args.photos)
    cores = os.cpu_count() or 1
    t = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")  # `address="auto"` below joins it
    ray_start_s = time.perf_counter() - t
    ray.data.DataContext.get_current().enable_progress_bars = False
    paths = {"one process": None, "ray, 1 actor": 1, "ray, 2 actors": 2}
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, actors in paths.items():
            runs[name].append(run_once(model, folder, args.precision, actors))

    rows = []
    for name, measured in runs.items():
        rate = statistics.median(r["steady_photos_per_s"] for r in measured)
        rows.append({"path": name, "seconds": statistics.median(r["seconds"] for r in measured), "steady_photos_per_s": rate})
    single = rows[0]["steady_photos_per_s"]
    for row in rows:
        row["overhead_ms_per_photo"] = 1000 * (1 / row["steady_photos_per_s"] - 1 / single)
    best = max(rows, key=lambda r: r["steady_photos_per_s"])
    per_core = best["steady_photos_per_s"] / cores
    cores_for_audit = AUDIT_PHOTOS / AUDIT_SECONDS / per_core

    print(hardware().describe())
    print(f"{args.photos} photos, precision {args.precision}, {cores} cores; Ray local start {ray_start_s:.1f} s (once)")
    print("| path | whole call s | steady photos/s | Ray overhead ms/photo |\n| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['path']} | {r['seconds']:.1f} | {r['steady_photos_per_s']:.1f} | {r['overhead_ms_per_photo']:+.2f} |")
    print(
        f"sizing: {per_core:.1f} photos/s per core ({best['path']}); 1M photos in one hour needs "
        f"{AUDIT_PHOTOS / AUDIT_SECONDS:.0f} photos/s = about {cores_for_audit:.0f} such cores"
    )
    result = {
        "rows": rows,
        "photos": args.photos,
        "repeats": args.repeats,
        "precision": args.precision,
        "cores": cores,
        "ray_start_s": ray_start_s,
        "photos_per_s_per_core": per_core,
        "cores_for_1m_photos_in_an_hour": cores_for_audit,
    }
    write_result(args.json, result, started, "predict_scale.py")


if __name__ == "__main__":
    main()
