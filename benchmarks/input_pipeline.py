"""Input pipeline speed: photos per CPU-second for read + decode + count-safe augmentation + normalise + collate,
as training runs it, from photo files and from tar shards, on local disk and on S3 (moto's server on 127.0.0.1).

    python benchmarks/input_pipeline.py                  # 512 photos of ../shared/abid, 224 px and the gpu recipe's size
    python benchmarks/input_pipeline.py --photos 256 --sizes 224

One process, one torch thread, no loader workers: the photos each core feeds per second, which is what sets the
cores a GPU needs. CPU time is this process's alone (moto's server runs in its own process, as S3 would be
elsewhere; the S3 client's work is counted). Prints a table naming the CPU and writes JSON to
benchmarks/results/input-pipeline-<cpu>.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import torch
from _results import RESULTS, write_result
from torch.utils.data import DataLoader, Dataset, IterableDataset

from bintally import storage
from bintally.data.abid import AbidRoot
from bintally.data.manifest import Manifest, ManifestBuild, SplitRatios, build_manifest, write_manifest
from bintally.data.shards import ShardsConfig, read_index, write_shards
from bintally.data.subset import Subset
from bintally.hardware import hardware
from bintally.model.dataset import BinDataset, ShardSource, ShardStream
from bintally.model.preprocess import Preprocess
from bintally.train.augment import Augmentation
from bintally.train.config import RECIPES, TrainConfig

ABID = Path(__file__).resolve().parents[2] / "shared" / "abid"
BUCKET = "pipeline"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3(port: int) -> subprocess.Popen:
    """moto's S3 server in its own process, so its CPU time is not counted as the pipeline's."""
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    os.environ[storage.ENDPOINT_ENV] = f"http://127.0.0.1:{port}"
    command = [Path(sys.executable).with_name("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            boto3.client("s3", endpoint_url=os.environ[storage.ENDPOINT_ENV]).create_bucket(Bucket=BUCKET)
            return server
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


def on_s3(manifest: Manifest) -> Manifest:
    """The same rows with their photos uploaded to the bucket."""
    s3 = boto3.client("s3", endpoint_url=os.environ[storage.ENDPOINT_ENV])
    for row in manifest.rows:
        s3.upload_file(row.uri, BUCKET, f"bin-images/{row.id}.jpg")
    return Manifest(rows=[r.model_copy(update={"uri": f"s3://{BUCKET}/bin-images/{r.id}.jpg"}) for r in manifest.rows])


def photos_per_cpu_second(dataset: Dataset | IterableDataset, batch_size: int, repeats: int) -> tuple[float, float]:
    """Median photos per CPU-second and per wall-second over full passes, through a DataLoader without workers."""
    cpu, wall = [], []
    for _ in range(repeats):
        cpu0, wall0, n = time.process_time(), time.perf_counter(), 0
        for x, _counts in DataLoader(dataset, batch_size=batch_size, num_workers=0):
            n += len(x)
        cpu.append(n / (time.process_time() - cpu0))
        wall.append(n / (time.perf_counter() - wall0))
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--abid", default=str(ABID))
    parser.add_argument("--photos", type=int, default=512)
    parser.add_argument("--sizes", default=f"224,{RECIPES['gpu']['image_size']}")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--photos-per-shard", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    started = time.monotonic()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="input-pipeline-"))
    all_train = SplitRatios(train=1, val=0, test=0)
    local = build_manifest(AbidRoot(args.abid), Subset(limit=args.photos), all_train).manifest
    server = start_s3(free_port())
    try:
        remote = on_s3(local)
        for name, manifest, out in (("local", local, str(tmp / "shards")), ("s3", remote, f"s3://{BUCKET}/shards")):
            write_manifest(ManifestBuild(manifest=manifest, problems=[]), str(tmp / f"{name}.parquet"))
            write_shards(ShardsConfig(manifest=str(tmp / f"{name}.parquet"), out=out, photos_per_shard=args.photos_per_shard))
        sources = {
            "files, local": local,
            "files, S3": remote,
            "shards, local": str(tmp / "shards"),
            "shards, S3": f"s3://{BUCKET}/shards",
        }
        rows = []
        for size in [int(s) for s in args.sizes.split(",")]:
            pp = Preprocess(size=size)
            augment = Augmentation("count_safe", pp, TrainConfig().augment_strength)
            for name, source in sources.items():
                if isinstance(source, Manifest):
                    dataset: Dataset | IterableDataset = BinDataset(source.rows, pp, augment)
                else:
                    shards = ShardSource(source, tuple(read_index(source, "train").shards))
                    dataset = ShardStream(shards, {r.id for r in local.rows}, pp, augment, TrainConfig().shuffle_buffer, "0")
                per_cpu_s, per_s = photos_per_cpu_second(dataset, args.batch_size, args.repeats)
                rows.append({"source": name, "image_size": size, "photos_per_cpu_second": per_cpu_s, "photos_per_second": per_s})
    finally:
        server.terminate()
        server.wait()
    machine = hardware()
    print(f"input pipeline on {machine.describe()}: {args.photos} ABID photos, batch {args.batch_size}, 1 thread")
    print(f"{'source':<16}{'px':>5}{'photos/CPU-s':>14}{'photos/s':>10}")
    for r in rows:
        print(f"{r['source']:<16}{r['image_size']:>5}{r['photos_per_cpu_second']:>14.0f}{r['photos_per_second']:>10.0f}")
    cpu = "-".join(machine.cpu.lower().replace("(r)", "").split()[:2])
    result = {"date": datetime.date.today().isoformat(), "photos": args.photos, "batch_size": args.batch_size, "rows": rows}
    write_result(RESULTS / f"input-pipeline-{cpu}.json", result, started, "input_pipeline.py")


if __name__ == "__main__":
    main()
