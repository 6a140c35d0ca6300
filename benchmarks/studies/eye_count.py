"""Counting by eye: how often does what a photo shows match the recorded count? A reference for the models'
numbers: where the eye and the record disagree, the photo does not show what was counted.

    python benchmarks/studies/eye_count.py sample MANIFEST --out DIR [--n 30 --seed 7]   # photos to count, blind
    python benchmarks/studies/eye_count.py score MANIFEST DIR/answers.csv [--model RUN_DIR ...]

`sample` draws N validation bins (seeded), writes each photo twice its size as DIR/NN.png, an answers.csv with
the bin ids and an empty `count` column, and draw.json (manifest, its digest, N, seed); the recorded counts are
not written anywhere, so whoever fills the column counts blind. `score` compares the filled column with the
validation records (accuracy, +-1, RMSE, mean error, per count) and, with --model (repeatable), scores each model
on the same bins beside it, with the paired difference in accuracy from the eye's and its 95% interval. Writes
JSON under benchmarks/results/, draw.json included.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

import _benchmarks  # noqa: F401  (the maintained benchmarks' helpers, from the folder above)
import numpy as np
from _results import RESULTS, write_result
from ensemble import COUNTS, member_probabilities

from bintally import storage
from bintally.accuracy import paired_accuracy_difference
from bintally.data.images import decode_image
from bintally.data.manifest import Manifest, ManifestRow, read_manifest
from bintally.evaluate.metrics import count_metrics


def validation_rows(manifest: Manifest) -> list[ManifestRow]:
    return [r for r in manifest.split("val") if r.count in COUNTS]


def sample(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(args.manifest)
    rows = random.Random(args.seed).sample(validation_rows(manifest), args.n)
    for i, row in enumerate(rows):
        image = decode_image(storage.read_bytes(row.uri))
        image.resize((image.width * 2, image.height * 2)).save(args.out / f"{i:02d}.png")
    with open(args.out / "answers.csv", "w", newline="") as f:
        csv.writer(f).writerows([["photo", "id", "count"], *([f"{i:02d}.png", r.id, ""] for i, r in enumerate(rows))])
    draw = {"manifest": args.manifest, "manifest_digest": manifest.digest(), "n": args.n, "seed": args.seed}
    (args.out / "draw.json").write_text(json.dumps(draw, indent=2))
    print(f"wrote {len(rows)} photos and {args.out / 'answers.csv'}: fill in the count column, then run score")


def read_answers(path: str) -> dict[str, int]:
    """{bin id: count} from a filled answers.csv; a blank or non-numeric count or a repeated id stops with its line."""
    answers: dict[str, int] = {}
    with open(path, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            where = f"{path}: line {line} (photo {row.get('photo')}, id {row.get('id')})"
            if not (row.get("count") or "").strip().isdigit():
                raise SystemExit(f"{where}: count {row.get('count')!r} is not a whole number; fill in every photo's count")
            if row["id"] in answers:
                raise SystemExit(f"{where}: bin {row['id']} is answered twice")
            answers[row["id"]] = int(row["count"])
    if not answers:
        raise SystemExit(f"{path}: no answers")
    return answers


def scored(true: list[int], answered: list[int]) -> dict:
    m = count_metrics(true, answered, classes=COUNTS)
    bias = float(np.mean(np.subtract(answered, true)))  # below 0: fewer seen than recorded
    return {k: m[k] for k in ("accuracy", "within_one", "rmse", "per_count")} | {"mean_error": bias}


def score(args: argparse.Namespace) -> None:
    started = time.monotonic()
    answers = read_answers(args.answers)
    rows = [r for r in validation_rows(read_manifest(args.manifest)) if r.id in answers]
    unknown = sorted(set(answers) - {r.id for r in rows})
    if unknown:  # a test bin, or a draw from another manifest: scoring it would be scoring the wrong thing
        raise SystemExit(f"{args.answers}: {len(unknown)} answered bins are not in {args.manifest}'s validation split: {unknown[:10]}")
    true, by_eye = [r.count for r in rows], [answers[r.id] for r in rows]
    results = {"by eye": scored(true, by_eye)}
    eye_right = np.equal(by_eye, true)
    for model in args.model:
        probabilities, _, _ = member_probabilities(model, rows, args.device, args.workers)
        answered = np.asarray(COUNTS)[probabilities.argmax(axis=1)]
        difference, low, high = paired_accuracy_difference(eye_right, answered == np.asarray(true))
        results[f"model {model}"] = scored(true, answered.tolist()) | {"vs_eye": {"difference": difference, "low": low, "high": high}}
    lines = [
        "| counted | accuracy | vs the eye (95% interval) | +-1 | RMSE | mean error | " + " | ".join(f"count {c}" for c in COUNTS) + " |"
    ]
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(COUNTS))
    for name, m in results.items():
        versus = f"{m['vs_eye']['difference']:+.1%} ({m['vs_eye']['low']:+.1%} to {m['vs_eye']['high']:+.1%})" if "vs_eye" in m else ""
        per = " | ".join(f"{m['per_count'].get(str(c), float('nan')):.0%}" for c in COUNTS)
        lines.append(
            f"| {name} | {m['accuracy']:.1%} | {versus} | {m['within_one']:.1%} | {m['rmse']:.2f} | {m['mean_error']:+.2f} | {per} |"
        )
    print(f"{len(rows)} bins; recorded counts " + ", ".join(f"{c}: {true.count(c)}" for c in COUNTS))
    print("\n".join(lines))
    draw_file = Path(args.answers).parent / "draw.json"
    draw = json.loads(draw_file.read_text()) if draw_file.exists() else None
    answered_rows = [{"id": r.id, "recorded": r.count, "by_eye": answers[r.id]} for r in rows]
    out = args.out or RESULTS / f"eye-count-{Path(args.answers).parent.name}.json"  # DIR names the draw
    result = {"draw": draw, "bins": len(rows), "answers": answered_rows, "results": results, "table": lines}
    write_result(out, result, started, "studies/eye_count.py")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True)
    drawing = commands.add_parser("sample", help="draw validation photos to count blind")
    drawing.add_argument("manifest")
    drawing.add_argument("--out", type=Path, required=True)
    drawing.add_argument("--n", type=int, default=30)
    drawing.add_argument("--seed", type=int, default=7)
    drawing.set_defaults(run=sample)
    scoring = commands.add_parser("score", help="score filled-in answers against the records")
    scoring.add_argument("manifest")
    scoring.add_argument("answers")
    scoring.add_argument("--model", action="append", default=[], help="a model to score on the same bins (repeatable)")
    scoring.add_argument("--device", default="auto")
    scoring.add_argument("--workers", type=int, default=1)
    scoring.add_argument("--out", type=Path, default=None)
    scoring.set_defaults(run=score)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
