"""Pack what the accuracy benchmark's `--preset gpu` needs on a lent GPU machine into one folder under 64 MiB
(what travels with a call of the device tool), for `benchmarks/device_accuracy.sh` to run there.

    python benchmarks/device_pack.py                       # -> runs/device/ (ignored by git)
    # then, through the device tool: run(command="bash benchmarks/device_accuracy.sh", carry=["runs/device"])

The folder holds:
  abid.zip                the counts 1-5 bins of the accuracy benchmark's manifest, in the ABID layout
                          (bin-images/ID.jpg as they are, metadata/ID.json compressed): about 41 MiB
  lite0.safetensors       packaged ImageNet EfficientNet-Lite0 without its ImageNet classifier, in float16
                          (half the size; `--weights` loads it into float32 parameters): about 7 MiB
  wheels/                 the Python packages bintally imports that the GPU machine's image lacks, for its
                          Python 3.12, at the versions installed here: about 8 MiB

The GPU machine rebuilds the same manifest from the unpacked bins: splits are a function of (seed, id), so
its train, val and test splits are this machine's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

from accuracy import ABID, manifest_for

from bintally.data.manifest import read_manifest
from bintally.model.backbones import create_imagenet_model

MAX_BYTES = 64 * 2**20  # what one device call carries, the working tree included
BACKBONE, CLASSIFIER = "tf_efficientnet_lite0", "classifier."
# Imported by bintally and absent from the GPU machine's image (its package list in the device tool's KINDS.md).
DEVICE_LACKS = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "optuna",
    "sqlalchemy",
    "colorlog",
    "fastapi",
    "starlette",
    "uvicorn",
    "python-multipart",
    "opentelemetry-api",
)
DEVICE_PYTHON = "3.12"


def pack_bins(manifest: str, out: Path) -> int:
    """The manifest's bins as an ABID-layout zip; returns how many."""
    rows = read_manifest(manifest).rows
    with zipfile.ZipFile(out, "w") as z:
        for row in rows:
            root = Path(row.source)  # the local ABID root the bin came from
            z.write(root / "bin-images" / f"{row.id}.jpg", f"bin-images/{row.id}.jpg", zipfile.ZIP_STORED)  # already JPEG
            z.write(root / "metadata" / f"{row.id}.json", f"metadata/{row.id}.json", zipfile.ZIP_DEFLATED)
    return len(rows)


def pack_weights(out: Path) -> None:
    """The packaged Lite0 backbone in float16, less its ImageNet classifier (a count head replaces it)."""
    from safetensors.torch import save_file

    state = create_imagenet_model(BACKBONE, "packaged").state_dict()
    save_file({k: v.half().contiguous() for k, v in state.items() if not k.startswith(CLASSIFIER)}, str(out))


def pack_wheels(out: Path, names: tuple[str, ...] = DEVICE_LACKS) -> None:
    """Wheels for the GPU machine's Python, at this machine's versions (the ones tested here)."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in names]
    platform = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--implementation=cp"]
    cmd += [f"--python-version={DEVICE_PYTHON}", *platform, "--dest", str(out), *pins]
    subprocess.run(cmd, check=True)


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def report_size(folder: Path, what: str) -> None:
    """Say what went into `folder` and its size; exit if a device call could not carry it."""
    size = size_of(folder)
    print(f"packed {what} into {folder}: {size / 2**20:.1f} MiB")
    if size > MAX_BYTES:
        sys.exit(f"{folder} is {size / 2**20:.1f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB a device call carries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ABID, help="ABID-layout root")
    parser.add_argument("--out", type=Path, default=Path("runs/device"))
    parser.add_argument("--manifest-dir", type=Path, default=Path("runs/benchmarks/accuracy"), help="where accuracy.py keeps its manifest")
    parser.add_argument("--no-wheels", action="store_true", help="leave the wheels out (a machine that has the packages)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    args.manifest_dir.mkdir(parents=True, exist_ok=True)
    n = pack_bins(manifest_for(args.data, args.manifest_dir), args.out / "abid.zip")
    pack_weights(args.out / "lite0.safetensors")
    if not args.no_wheels:
        pack_wheels(args.out / "wheels")
    report_size(args.out, f"{n:,} bins, the Lite0 weights{'' if args.no_wheels else ' and wheels'}")


if __name__ == "__main__":
    main()
