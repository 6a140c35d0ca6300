"""Counting accuracy: the original recipe against the best known one, on the same split of ../shared/abid (counts 1-5).

    python benchmarks/accuracy.py --preset cpu-small    # 2-core CPU, under 30 minutes: a subset, small photos, few epochs
    python benchmarks/accuracy.py --preset cpu-full     # 2-core CPU, about an hour: all training photos, 160 px, 8 epochs
    python benchmarks/accuracy.py --preset gpu          # a CUDA GPU: all the data, 224 px, 20 epochs
    python benchmarks/accuracy.py --preset cpu-full --image-size 224 --epochs 10 --recipes best   # one recipe, overridden
    python benchmarks/accuracy.py --table               # the table of every run recorded in benchmarks/results/

Recipes, both on packaged ImageNet EfficientNet-Lite0 (the only ImageNet CNN available offline):
  original  frozen backbone, new linear head, RandomResizedCrop (area down to 8%), plain classification
            (the original system's recipe; it used ResNet-34, which has no offline weights)
  best      `bintally train`'s default recipe: full fine-tune, count-safe augmentation, soft ordinal labels (sigma 0.7)
  best-ema  best, keeping an EMA of the weights (decay 0.998); the raw weights are validated beside it

Each is trained with `bintally.train.train` (model selection on the val split) and scored once on the
test split with `bintally.evaluate.evaluate`. Prints one table and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bintally.data.abid import AbidRoot
from bintally.data.manifest import build_manifest, write_manifest
from bintally.data.subset import Subset
from bintally.evaluate.report import evaluate
from bintally.hardware import hardware
from bintally.train.config import RECIPES as TRAIN_RECIPES
from bintally.train.config import TrainConfig
from bintally.train.loop import train

RESULTS = Path(__file__).resolve().parent / "results"
ABID = Path(__file__).resolve().parents[2] / "shared" / "abid"
PRESETS = {
    "cpu-small": {"image_size": 128, "epochs": 5, "limit_train": 600, "limit_val": 200, "batch_size": 32, "workers": 2, "device": "cpu"},
    "cpu-full": {"image_size": 160, "epochs": 8, "limit_val": 400, "batch_size": 32, "workers": 2, "device": "cpu"},
    "gpu": {"image_size": 224, "epochs": 20, "batch_size": 64, "workers": 8, "device": "cuda"},
}
RECIPES = {"original": TRAIN_RECIPES["original"], "best": TRAIN_RECIPES["default"]}
# Levers on top of the best recipe; each run also records what it needs to compare on validation (e.g. EMA vs raw weights).
RECIPES["best-ema"] = {**RECIPES["best"], "ema_decay": 0.998}
COUNTS = (1, 5)


def manifest_for(data: Path, out: Path) -> str:
    """The counts 1-5 bins of the sample, split 80/10/10 with seed 0 (built once, then reused)."""
    path = out / "manifest.parquet"
    if not path.exists():
        write_manifest(build_manifest(AbidRoot(str(data)), Subset(counts=COUNTS), seed=0), str(path))
    return str(path)


def run_recipe(name: str, manifest: str, out: Path, preset: dict) -> dict:
    cfg = TrainConfig(**preset, **RECIPES[name], patience=preset["epochs"])  # fixed epochs; best val epoch kept
    run = out / name
    started = time.monotonic()
    result = train(manifest, str(run), cfg, resume=True)  # resumes an interrupted benchmark
    minutes = (time.monotonic() - started) / 60
    test = evaluate(str(run), manifest, str(out / f"{name}-report"), split="test", device=preset["device"], workers=preset["workers"])
    return {
        "recipe": name,
        "config": cfg.model_dump(mode="json"),
        "best_epoch": result.best_epoch,
        "validation": result.best_val,
        "history": result.history,
        "train_minutes": minutes,
        "test": test.metrics,
    }


def table(rows: list[dict]) -> str:
    """One line per run: the best epoch's validation accuracy (what selected it) and the test split, scored once."""
    counts = [str(c) for c in range(COUNTS[0], COUNTS[1] + 1)]
    head = "| recipe | setting | val acc | accuracy | +-1 | RMSE | MAE | " + " | ".join(f"count {c}" for c in counts) + " | train min |"
    lines = [head, "| --- " * (8 + len(counts)) + "|"]
    for r in rows:
        m = r["test"]
        per_count = " | ".join(f"{m['per_count'].get(c, float('nan')):.1%}" for c in counts)
        lines.append(
            f"| {r['recipe']} | {r.get('setting', '')} | {r['validation'].get('accuracy', float('nan')):.1%} | {m['accuracy']:.1%} "
            f"| {m['within_one']:.1%} | {m['rmse']:.2f} | {m['mae']:.2f} | {per_count} | {r['train_minutes']:.1f} |"
        )
    return "\n".join(lines)


def ema_comparison(rows: list[dict]) -> list[str]:
    """For runs with an EMA: its validation accuracy against the raw weights', epoch by epoch, in the same run."""
    lines = []
    for r in rows:
        pairs = [(h["val"]["accuracy"], h["val_raw"]["accuracy"]) for h in r["history"] if "val_raw" in h]
        if pairs:
            ema, raw = zip(*pairs)
            lines.append(
                f"{r['recipe']} ({r.get('setting', '')}): validation accuracy, EMA vs raw weights: best {max(ema):.1%} vs {max(raw):.1%}, "
                f"last epoch {ema[-1]:.1%} vs {raw[-1]:.1%}; per epoch " + ", ".join(f"{e:.1%}/{w:.1%}" for e, w in pairs)
            )
    return lines


def results_table(folder: Path) -> str:
    """Every run recorded under `folder` (accuracy-*.json), one table, with the hardware each ran on."""
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("accuracy-*.json"))]
    rows = [r | {"setting": result["setting"]} for result in results for r in result["rows"]]
    machines = sorted({result["hardware"]["described"] for result in results})
    return "\n".join([table(rows), "", *ema_comparison(rows), "", *(f"hardware: {m}" for m in machines)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    parser.add_argument("--data", type=Path, default=ABID, help="ABID-layout root")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/accuracy"), help="manifest, runs and reports")
    parser.add_argument("--json", type=Path, default=None, help="default: benchmarks/results/accuracy-SETTING.json")
    parser.add_argument("--image-size", type=int, default=None, help="override the preset's")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's")
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--table", action="store_true", help="only print the table of every result file in benchmarks/results/")
    args = parser.parse_args()
    if args.table:
        print(results_table(RESULTS))
        return

    overrides = {k: v for k, v in {"image_size": args.image_size, "epochs": args.epochs}.items() if v is not None}
    preset = {**PRESETS[args.preset], **overrides}
    setting = args.preset + "".join(f"-{k.replace('_', '-')}{v}" for k, v in overrides.items())  # runs never mix settings
    out = args.out / setting
    out.mkdir(parents=True, exist_ok=True)
    manifest = manifest_for(args.data, args.out)
    started = time.monotonic()
    rows = [run_recipe(name, manifest, out, preset) | {"setting": setting} for name in args.recipes]
    summary = "\n".join([table(rows), *ema_comparison(rows)])
    machine, minutes = hardware(), (time.monotonic() - started) / 60
    print(f"{setting} on {machine.describe()}, test split of {rows[0]['test']['n']:,} bins, {minutes:.1f} min in all")
    print(summary)
    path = args.json or RESULTS / f"accuracy-{setting}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "setting": setting,
        "preset": preset,
        "data": {"root": str(args.data), "manifest": manifest, "counts": COUNTS, "split": "80/10/10, seed 0"},
        "hardware": machine.model_dump() | {"described": machine.describe()},
        "minutes": minutes,
        "command": " ".join(["python", "benchmarks/accuracy.py", *sys.argv[1:]]),
        "table": summary,
        "rows": rows,
    }
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
