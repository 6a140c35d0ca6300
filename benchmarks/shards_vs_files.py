"""The same training from photo files and from shards, on the sample: do they learn alike (within seed noise)?

    python benchmarks/shards_vs_files.py                 # counts 1-5, 1,800 bins, 1,000 training photos, 160 px, 2 epochs, seeds 0-1

Both runs read the same manifest rows with the same preprocessing and labels; only the order differs (a global
shuffle against shards dealt to loader workers through a shuffle buffer). Validation accuracy only (validation
picks nothing here; the test split is not read). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _results import RESULTS, write_result

from bintally.data.abid import AbidRoot
from bintally.data.manifest import build_manifest, write_manifest
from bintally.data.shards import ShardsConfig, write_shards
from bintally.data.subset import Subset
from bintally.train.config import TrainConfig
from bintally.train.loop import train

ABID = Path(__file__).resolve().parents[2] / "shared" / "abid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ABID)
    parser.add_argument("--work", type=Path, default=Path("runs/shards-vs-files"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=RESULTS / "shards-vs-files.json")
    args = parser.parse_args()
    started = time.monotonic()
    manifest, shards = str(args.work / "manifest.parquet"), str(args.work / "shards")
    write_manifest(build_manifest(AbidRoot(str(args.data)), Subset(counts=(1, 5), limit=1800), seed=0), manifest)
    write_shards(ShardsConfig(manifest=manifest, out=shards, photos_per_shard=100))
    cfg = TrainConfig(limit_train=1000, image_size=160, epochs=2, workers=1, precision="fp32", ema_decay=None)  # 2 epochs: raw weights
    rows = []
    for seed in args.seeds:
        for source in ("files", "shards"):
            begun = time.monotonic()
            result = train(manifest, str(args.work / f"{source}-{seed}"), cfg.model_copy(update={"seed": seed}),
                           shards=shards if source == "shards" else None)  # fmt: skip
            rows.append({"source": source, "seed": seed, "val": result.best_val, "minutes": (time.monotonic() - begun) / 60})
    table = "\n".join(
        ["| source | seed | val exact | val +-1 | val RMSE | minutes |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        + [
            f"| {r['source']} | {r['seed']} | {r['val']['accuracy']:.1%} | {r['val']['within_one']:.1%} | {r['val']['rmse']:.2f} | "
            f"{r['minutes']:.1f} |"
            for r in rows
        ]  # fmt: skip
    )
    print(table)
    write_result(args.out, {"config": cfg.model_dump(mode="json"), "rows": rows, "table": table}, started, "shards_vs_files.py")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
