"""Counting by eye: how often does what a photo shows match the recorded count? A baseline no model can be
asked to beat by much.

    python benchmarks/eye_count.py sample MANIFEST --out DIR [--n 30 --seed 7]   # photos to count, blind
    python benchmarks/eye_count.py score MANIFEST DIR/answers.csv [--model RUN_DIR ...]

`sample` draws N validation bins (seeded), writes each photo twice its size as DIR/NN.png and an answers.csv
with the bin ids and an empty `count` column; the recorded counts are not written anywhere, so whoever fills
the column counts blind. `score` compares the filled column with the records (accuracy, +-1, RMSE, per count)
and, with --model (repeatable), gives each model's answers on the same bins beside them. Writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, write_result
from ensemble import COUNTS, member_probabilities

from bintally import storage
from bintally.data.images import decode_image
from bintally.data.manifest import ManifestRow, read_manifest
from bintally.evaluate.metrics import count_metrics


def drawn(manifest: str, n: int, seed: int) -> list[ManifestRow]:
    rows = [r for r in read_manifest(manifest).split("val") if r.count in COUNTS]
    return random.Random(seed).sample(rows, n)


def sample(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    rows = drawn(args.manifest, args.n, args.seed)
    for i, row in enumerate(rows):
        image = decode_image(storage.read_bytes(row.uri))
        image.resize((image.width * 2, image.height * 2)).save(args.out / f"{i:02d}.png")
    with open(args.out / "answers.csv", "w", newline="") as f:
        csv.writer(f).writerows([["photo", "id", "count"], *([f"{i:02d}.png", r.id, ""] for i, r in enumerate(rows))])
    print(f"wrote {len(rows)} photos and {args.out / 'answers.csv'}: fill in the count column, then run score")


def scored(true: list[int], answered: list[int]) -> dict:
    m = count_metrics(true, answered, classes=COUNTS)
    bias = float(np.mean(np.subtract(answered, true)))  # below 0: fewer seen than recorded
    return {k: m[k] for k in ("accuracy", "within_one", "rmse", "per_count")} | {"mean_error": bias}


def score(args: argparse.Namespace) -> None:
    started = time.monotonic()
    with open(args.answers, newline="") as f:
        answers = {r["id"]: int(r["count"]) for r in csv.DictReader(f)}
    rows = [r for r in read_manifest(args.manifest).rows if r.id in answers]
    true = [r.count for r in rows]
    results = {"by eye": scored(true, [answers[r.id] for r in rows])}
    for model in args.model:
        probabilities, _, _ = member_probabilities(model, rows, "auto", 1)
        results[f"model {model}"] = scored(true, np.asarray(COUNTS)[probabilities.argmax(axis=1)].tolist())
    lines = ["| counted | accuracy | +-1 | RMSE | mean error | " + " | ".join(f"count {c}" for c in COUNTS) + " |"]
    lines.append("| --- | ---: | ---: | ---: | ---: |" + " ---: |" * len(COUNTS))
    for name, m in results.items():
        per = " | ".join(f"{m['per_count'].get(str(c), float('nan')):.0%}" for c in COUNTS)
        lines.append(f"| {name} | {m['accuracy']:.1%} | {m['within_one']:.1%} | {m['rmse']:.2f} | {m['mean_error']:+.2f} | {per} |")
    print(f"{len(rows)} bins; recorded counts " + ", ".join(f"{c}: {true.count(c)}" for c in COUNTS))
    print("\n".join(lines))
    answered = [{"id": r.id, "recorded": r.count, "by_eye": answers[r.id]} for r in rows]
    out = args.out or RESULTS / f"eye-count-{Path(args.answers).parent.name}.json"  # DIR names the draw
    write_result(out, {"bins": len(rows), "answers": answered, "results": results, "table": lines}, started, "eye_count.py")
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
    scoring.add_argument("--out", type=Path, default=None)
    scoring.set_defaults(run=score)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
