"""Pack a manifest's photos for training on a lent GPU machine, in one folder under 64 MiB (what a device call
carries): the rows of the chosen splits, their photos, the packaged Lite0 weights and the wheels the machine lacks.

    python benchmarks/device_pack_manifest.py runs/all/manifest.parquet --splits train,val --out runs/device-all
    # then, through the device tool: run(command="bash benchmarks/device_train.sh ...", carry=["runs/device-all"])

Unlike benchmarks/device_pack.py (the accuracy benchmark's 1-5 bins in the ABID layout, metadata included), this
ships the manifest itself: the GPU machine trains on exactly these rows and splits, whatever their counts.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
from device_pack import pack_weights, pack_wheels, report_size

from bintally.data.manifest import read_manifest, read_parquet


def pack_rows(manifest: str, splits: list[str], out: Path) -> int:
    """The rows of `splits`: their photos in photos.zip as ID.jpg, and manifest.parquet with uris relative to it."""
    rows = [r for split in splits for r in read_manifest(manifest).split(split)]
    with zipfile.ZipFile(out / "photos.zip", "w") as z:
        for row in rows:
            z.write(row.uri, f"{row.id}.jpg", zipfile.ZIP_STORED)  # already JPEG
    table = read_parquet(manifest)
    keep = {r.id for r in rows}
    table = table.filter([i in keep for i in table.column("id").to_pylist()])
    uris = [f"{i}.jpg" for i in table.column("id").to_pylist()]
    pq.write_table(table.set_column(table.schema.get_field_index("uri"), "uri", [uris]), out / "manifest.parquet")
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("--splits", default="train,val", help="the splits the GPU run reads (leave the test split here)")
    parser.add_argument("--out", type=Path, default=Path("runs/device-all"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    n = pack_rows(args.manifest, args.splits.split(","), args.out)
    pack_weights(args.out / "lite0.safetensors")
    pack_wheels(args.out / "wheels", ("pydantic", "pydantic-core", "annotated-types", "typing-inspection"))
    report_size(args.out, f"{n:,} photos of {args.splits}, the Lite0 weights and wheels")


if __name__ == "__main__":
    main()
