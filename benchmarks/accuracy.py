"""Counting accuracy: the original recipe against the best known one, on the same split of ../shared/abid (counts 1-5).

    python benchmarks/accuracy.py --preset cpu-small    # 2-core CPU, under 30 minutes: a subset, small photos, few epochs
    python benchmarks/accuracy.py --preset cpu-full     # 2-core CPU, about an hour: all training photos, 160 px, 8 epochs
    python benchmarks/accuracy.py --preset gpu          # a CUDA GPU: all the data, 224 px, 20 epochs
    python benchmarks/accuracy.py --preset cpu-full --image-size 224 --epochs 10 --recipes best   # one recipe, overridden
    python benchmarks/accuracy.py --preset cpu-screen --limit-train 1132 --recipes best --validation-only   # a learning curve's point
    python benchmarks/accuracy.py --table               # the table of every run recorded in benchmarks/results/
    python benchmarks/accuracy.py --learning-curve      # the default recipe's runs at 160 px by training photos and seed

Recipes, both on packaged ImageNet EfficientNet-Lite0 (the only ImageNet CNN available offline):
  original  frozen backbone, new linear head, RandomResizedCrop (area down to 8%), plain classification
            (the original system's recipe; it used ResNet-34, which has no offline weights)
  best      `bintally train`'s default recipe: full fine-tune, count-safe augmentation, soft ordinal labels; since
            the cpu-screen study its learning rates, weight decay, sigma and augmentation strength are the study's
            (result files before that hold the earlier defaults in their `config`); since the 224 px seed-1 run, an
            EMA of the weights (decay 0.998) is validated, kept and shipped, the raw weights validated beside it
            (the best-ema result files measured it as a lever; best-no-ema is the recipe without it)

Each is trained with `bintally.train.train` (model selection on the val split) and scored once on the
test split with `bintally.evaluate.evaluate`. Prints one table and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import tables

from bintally.cli.train import print_epoch, step_progress
from bintally.data.abid import AbidRoot
from bintally.data.manifest import Manifest, ManifestBuild, build_manifest, read_manifest, write_manifest
from bintally.data.subset import Subset
from bintally.evaluate.calibrate import split_logits
from bintally.evaluate.metrics import metrics_from_logits, scalars
from bintally.evaluate.report import evaluate, predict_split
from bintally.hardware import hardware
from bintally.model.artifact import load_artifact
from bintally.train.config import RECIPES as TRAIN_RECIPES
from bintally.train.config import TrainConfig
from bintally.train.loop import train

RESULTS = Path(__file__).resolve().parent / "results"
ABID = Path(__file__).resolve().parents[2] / "shared" / "abid"
PRESETS = {
    "cpu-small": {"image_size": 128, "epochs": 5, "limit_train": 600, "limit_val": 200, "batch_size": 32, "workers": 2, "device": "cpu"},
    "cpu-full": {"image_size": 160, "epochs": 8, "limit_val": 400, "batch_size": 32, "workers": 2, "device": "cpu"},
    "gpu": {"image_size": 224, "epochs": 20, "batch_size": 64, "workers": 8, "device": "cuda"},
    # For comparing levers on validation (--validation-only): all training photos, the whole val split, ~20 min a run.
    "cpu-screen": {"image_size": 160, "epochs": 6, "batch_size": 32, "workers": 2, "device": "cpu"},
    # The default recipe's own budget on 2 cores (~75 min): for confirming the screen's winners, the whole val split.
    "cpu-default": {"image_size": 224, "epochs": 10, "batch_size": 32, "workers": 2, "device": "cpu"},
}
RECIPES = {"original": TRAIN_RECIPES["original"], "best": TRAIN_RECIPES["default"]}
# Levers on top of the best recipe, one change each, named best-LEVER. Compare them on validation
# (--validation-only), combine the winners, then score the combination once on test.
LEVERS = {
    # The EMA of the weights is the default now (its runs are the best-ema files); this measures the recipe without it.
    "no-ema": {"ema_decay": None},
    "warmup": {"warmup_epochs": 1},
    "sigma-0.5": {"ordinal_sigma": 0.5},
    "sigma-1.0": {"ordinal_sigma": 1.0},
    "classify-smoothing-0.1": {"head": "classify", "label_smoothing": 0.1},  # label smoothing instead of ordinal labels
    "augment-0.5": {"augment_strength": 0.5},
    "augment-1.5": {"augment_strength": 1.5},
    "lite1": {"backbone": "tf_efficientnet_lite1"},
    "lite2": {"backbone": "tf_efficientnet_lite2"},
    "aux-volume": {"aux_target": "volume"},  # also learn the bin's summed item volume (ABID metadata)
    "aux-weight": {"aux_target": "weight"},
    "extra-counts": {},  # the same recipe, trained also on the sample's count 0 and 6-10 bins (EXTRA_COUNTS)
    # The best trial of the `bintally tune --space cpu-screen` study (docs/tuning.md), read from its result file: measured
    # against the earlier defaults, then made the default (rounded), so now nearly `best` itself.
    "tuned": json.loads((RESULTS / "tune-cpu-screen.json").read_text())["best"]["params"],
}
RECIPES |= {f"best-{lever}": {**RECIPES["best"], **change} for lever, change in LEVERS.items()}
# The screen's winners that change the recipe alone (not the data), together: the candidate default.
RECIPES["best-warmup-augment-1.5"] = {**RECIPES["best"], **LEVERS["warmup"], **LEVERS["augment-1.5"]}
COUNTS = (1, 5)
EXTRA_COUNTS = {"best-extra-counts": (0, 10)}  # recipe -> the counts its training rows may have (val and test stay 1-5)


def manifest_for(data: Path, out: Path) -> str:
    """The counts 1-5 bins of the sample, split 80/10/10 with seed 0 (built once, then reused)."""
    path = out / "manifest.parquet"
    if not path.exists():
        write_manifest(build_manifest(AbidRoot(str(data)), Subset(counts=COUNTS), seed=0), str(path))
    return str(path)


def extended_manifest(data: Path, out: Path, counts: tuple[int, int]) -> str:
    """The counts 1-5 manifest plus the training-split bins of the other `counts`: more photos to learn
    from, the same val and test bins (splits come from the bin id, so they agree with the 1-5 manifest)."""
    path = out / f"manifest-train-counts{counts[0]}-{counts[1]}.parquet"
    if not path.exists():
        base = read_manifest(manifest_for(data, out))
        wider = build_manifest(AbidRoot(str(data)), Subset(counts=counts), seed=0).manifest
        known = {r.id for r in base.rows}
        extra = [r for r in wider.rows if r.split == "train" and not COUNTS[0] <= r.count <= COUNTS[1] and r.id not in known]
        write_manifest(ManifestBuild(manifest=Manifest(rows=base.rows + extra), problems=[]), str(path))
    return str(path)


def run_recipe(name: str, manifest: str, out: Path, preset: dict, validation_only: bool) -> dict:
    # Fixed epochs, the best validation epoch kept; with an EMA, the raw weights validated beside it.
    cfg = TrainConfig(**preset, **RECIPES[name], patience=preset["epochs"], validate_raw=True)
    run = out / name
    started = time.monotonic()
    with step_progress() as on_step:  # as `bintally train` shows it: a bar, or a line every 30 s in logs
        result = train(manifest, str(run), cfg, on_epoch=print_epoch, on_step=on_step, resume=True)  # resumes an interrupted run
    minutes = (time.monotonic() - started) / 60
    row = {
        "recipe": name,
        "config": cfg.model_dump(mode="json"),
        "manifest": manifest,
        "best_epoch": result.best_epoch,
        "validation": result.best_val,
        "validation_precision": "fp32",  # as served (runs before this field validated under bf16 autocast)
        "history": result.history,
        "train_minutes": minutes,
    }
    if name in EXTRA_COUNTS:
        row["validation_answering_1_5"] = answering_1_to_5(run, manifest)
    if validation_only:
        return row
    test = evaluate(str(run), manifest, str(out / f"{name}-report"), split="test", device=preset["device"], workers=preset["workers"])
    return row | {"test": test.metrics}


def table(rows: list[dict]) -> str:
    """One line per run: the best epoch's validation scores (what selected it) and the test split, scored once
    (blank for runs that compared levers on validation only)."""
    counts = [str(c) for c in range(COUNTS[0], COUNTS[1] + 1)]
    head = (
        "| recipe | setting | val acc | val +-1 | val RMSE | test acc | +-1 | RMSE | MAE | "
        + " | ".join(f"count {c}" for c in counts)
        + " | train min |"
    )
    lines = [head, "| --- " * (10 + len(counts)) + "|"]
    for r in rows:
        v = r["validation"]
        scored = [f"{v['accuracy']:.1%}", f"{v['within_one']:.1%}", f"{v['rmse']:.2f}"]
        m = r.get("test")
        if m:
            per_count = [f"{m['per_count'].get(c, float('nan')):.1%}" for c in counts]
            scored += [f"{m['accuracy']:.1%}", f"{m['within_one']:.1%}", f"{m['rmse']:.2f}", f"{m['mae']:.2f}", *per_count]
        else:
            scored += [""] * (4 + len(counts))
        lines.append(f"| {r['recipe']} | {r.get('setting', '')} | " + " | ".join(scored) + f" | {r['train_minutes']:.1f} |")
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


def learning_curve(folder: Path) -> str:
    """The learning-curve table (`--learning-curve`): rendered by benchmarks/tables.py, the one renderer."""
    return "\n".join(tables.learning_curve(folder=folder))


def answering_1_to_5(run: Path, manifest: str) -> dict:
    """Validation metrics of a model trained on more counts, its answer restricted to the benchmark's counts 1-5:
    do the extra bins help the 1-5 answer once the model may not answer 0 or 6+?"""
    artifact = load_artifact(str(run))
    logits, counts = split_logits(artifact, read_manifest(manifest), "val", "cpu", workers=2)
    keep = [i for i, c in enumerate(artifact.spec.classes) if COUNTS[0] <= c <= COUNTS[1]]
    return scalars(metrics_from_logits(logits[:, keep], counts, [artifact.spec.classes[i] for i in keep]))


def rescore_validation(folder: Path, runs: Path, manifest: str) -> None:
    """Result files whose validation ran under bf16 autocast (before the loop validated in float32): each run's
    kept artifact scored on the validation split in float32, as `evaluate` and serving score it. The bf16 numbers
    stay beside, as `validation_bf16_autocast`; the epoch kept is still the one they picked."""
    for path in sorted(folder.glob("accuracy-*.json")):
        result = json.loads(path.read_text())
        for row in result["rows"]:
            run = runs / result["setting"] / row["recipe"]
            if not run.is_dir():
                continue
            if row.get("validation_precision") != "fp32":
                served = predict_split(load_artifact(str(run)), manifest, "val", "cpu", batch_size=64, workers=2)
                row |= {"validation_bf16_autocast": row["validation"], "validation": scalars(served), "validation_precision": "fp32"}
                before = row["validation_bf16_autocast"]["accuracy"]
                print(f"{path.name} {row['recipe']}: val acc {before:.1%} (bf16 autocast) -> {served['accuracy']:.1%} (fp32)")
            if row["recipe"] in EXTRA_COUNTS and "validation_answering_1_5" not in row:
                row["validation_answering_1_5"] = answering_1_to_5(run, manifest)
                print(f"{path.name} {row['recipe']}: answering 1-5 only, val acc {row['validation_answering_1_5']['accuracy']:.1%}")
        result["table"] = table([r | {"setting": result["setting"]} for r in result["rows"]])
        path.write_text(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    parser.add_argument("--data", type=Path, default=ABID, help="ABID-layout root")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/accuracy"), help="manifest, runs and reports")
    parser.add_argument("--json", type=Path, default=None, help="default: benchmarks/results/accuracy-SETTING.json")
    parser.add_argument("--image-size", type=int, default=None, help="override the preset's")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None, help="training precision (default: auto)")
    parser.add_argument("--limit-train", type=int, default=None, help="a seeded sample of this many training photos (a learning curve)")
    parser.add_argument("--seed", type=int, default=None, help="training seed (initialisation, batch order, augmentation); the split stays")
    parser.add_argument(
        "--weights", default=None, help="the backbone's starting weights (default: packaged), e.g. device_pack.py's float16 copy"
    )
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--validation-only", action="store_true", help="compare on validation; do not score the test split")
    parser.add_argument("--table", action="store_true", help="only print the table of every result file in benchmarks/results/")
    parser.add_argument("--learning-curve", action="store_true", help="only print the default recipe's 160 px runs by training photos")
    parser.add_argument("--rescore-validation", action="store_true", help="score bf16-validated result files' runs in float32")
    args = parser.parse_args()
    if args.table:
        print(results_table(RESULTS))
        return
    if args.learning_curve:
        print(learning_curve(RESULTS))
        return
    if args.rescore_validation:
        rescore_validation(RESULTS, args.out, manifest_for(args.data, args.out))
        return

    asked = {k: getattr(args, k) for k in ("image_size", "epochs", "precision", "limit_train", "seed")}
    overrides = {k: v for k, v in asked.items() if v is not None}
    setting = args.preset + "".join(f"-{k.replace('_', '-')}{v}" for k, v in overrides.items())  # runs never mix settings
    preset = {**PRESETS[args.preset], **overrides, **({"weights": args.weights} if args.weights else {})}  # recorded, not named
    out = args.out / setting
    out.mkdir(parents=True, exist_ok=True)
    manifest = manifest_for(args.data, args.out)
    started = time.monotonic()
    rows = []
    for name in args.recipes:
        data = extended_manifest(args.data, args.out, EXTRA_COUNTS[name]) if name in EXTRA_COUNTS else manifest
        rows.append(run_recipe(name, data, out, preset, args.validation_only) | {"setting": setting})
    summary = "\n".join([table(rows), *ema_comparison(rows)])
    machine, minutes = hardware(), (time.monotonic() - started) / 60
    scored = "validation only" if args.validation_only else f"test split of {rows[0]['test']['n']:,} bins"
    print(f"{setting} on {machine.describe()}, {scored}, {minutes:.1f} min in all")
    print(summary)
    path = args.json or RESULTS / f"accuracy-{setting}-{'+'.join(args.recipes)}.json"
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
