"""`predict` and `reconcile` with `--ray` on a real two-node Ray cluster on 127.0.0.1, against the one-machine path.

The cluster is Ray's own multi-node test cluster: a head and a second node, each a real raylet with its own
worker processes. Ray normally advertises the machine's network address even for 127.0.0.1;
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes it use loopback, so the test talks to nothing but 127.0.0.1.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is imported: before any import of it
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

from bintally.cli import app, with_ray_default
from bintally.data.manifest import read_parquet
from bintally.errors import BintallyError
from bintally.model.artifact import load_artifact, write_spec
from bintally.predict import PredictConfig, predict
from bintally.reconcile.records import ReconcileConfig, reconcile_records
from bintally.scoring.model import load_model
from bintally.scoring.on_ray import RayConfig, score_on_ray, shards_of
from bintally.scoring.one_machine import score_images
from bintally.scoring.photos import list_images

pytestmark = pytest.mark.slow
LOCAL_PHOTOS, S3_PHOTOS = 150, 50


@pytest.fixture(scope="module")
def onnx_artifact(small_artifact, abid_root, tmp_path_factory) -> str:
    """The shared small artifact with its model.onnx (checked on two real photos), as a served model has it."""
    from bintally.data.images import decode_image
    from bintally.model.artifact import ONNX_FILE
    from bintally.model.export import export_onnx

    out = tmp_path_factory.mktemp("onnx-artifact") / "model"
    shutil.copytree(small_artifact, out)
    check = [decode_image(p.read_bytes()) for p in sorted((abid_root / "bin-images").glob("*.jpg"))[:2]]
    export_onnx(load_artifact(str(out)), str(out / ONNX_FILE), check)
    return str(out)


@pytest.fixture(scope="module")
def cluster(s3_endpoint):
    """A head and one more node, two logical CPUs each (the S3 credentials are in the environment the workers inherit)."""
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    nodes.add_node(num_cpus=2)
    ray.init(address=nodes.address)
    assert [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]] == ["127.0.0.1", "127.0.0.1"]
    yield nodes
    ray.shutdown()
    nodes.shutdown()


@pytest.fixture(scope="module")
def photos(abid_root, s3_endpoint, tmp_path_factory) -> list[str]:
    """150 real bin photos in a folder (linked, read in place), one corrupt JPEG, and 50 more in moto's S3."""
    folder = tmp_path_factory.mktemp("ray-photos")
    sample = sorted((abid_root / "bin-images").glob("*.jpg"))
    for p in sample[:LOCAL_PHOTOS]:
        (folder / p.name).symlink_to(p)
    (folder / "broken.jpg").write_bytes(sample[0].read_bytes()[:300])
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="ray-audit")
    for p in sample[LOCAL_PHOTOS : LOCAL_PHOTOS + S3_PHOTOS]:
        s3.put_object(Bucket="ray-audit", Key=f"day1/{p.name}", Body=p.read_bytes())
    return [str(folder), "s3://ray-audit/day1/"]


@pytest.fixture(scope="module")
def one_machine(onnx_artifact, photos, s3_endpoint, tmp_path_factory) -> dict[str, dict]:
    """The same photos scored without Ray: what the cluster must reproduce photo for photo."""
    out = tmp_path_factory.mktemp("one-machine") / "predictions.csv"
    predict(PredictConfig(model=onnx_artifact, inputs=photos, out=str(out), endpoint_url=s3_endpoint))
    return read_rows(out)


def read_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as fh:
        return {row["uri"]: row for row in csv.DictReader(fh)}


def assert_same_scores(rows: dict[str, dict], expected: dict[str, dict]) -> None:
    assert set(rows) == set(expected)
    for uri, row in rows.items():
        assert row["count"] == expected[uri]["count"], uri
        assert abs(float(row["confidence"] or 0) - float(expected[uri]["confidence"] or 0)) < 1e-4, uri
        assert bool(row["error"]) == bool(expected[uri]["error"]), uri


def test_two_nodes_score_like_one_machine_then_resume(cluster, onnx_artifact, photos, one_machine, s3_endpoint, tmp_path):
    """Tried: 201 photos (150 local, one corrupt, 50 on S3) scored on two nodes with one model actor each, in
    shards of 40 rows; then the shards a run killed before its merge leaves, with one deleted and another cut in
    half (a kill during a write), and a rerun. Must hold: every count equals the one-machine path's, the corrupt
    photo keeps its error, the shards are removed once merged, the rerun scores only what no readable shard holds
    (the corrupt photo is retried every time), and the merged file always has exactly one row per photo."""
    out = tmp_path / "predictions.csv"
    ray_cfg = RayConfig(address=cluster.address, shard_rows=40)
    cfg = PredictConfig(model=onnx_artifact, inputs=photos, out=str(out), endpoint_url=s3_endpoint, batch_size=16, ray=ray_cfg)
    total = LOCAL_PHOTOS + S3_PHOTOS + 1
    first = predict(cfg)
    assert (first.found, first.skipped, first.scored, first.failed) == (total, 0, total - 1, 1)
    assert_same_scores(read_rows(out), one_machine)
    assert len(out.read_text().splitlines()) == total + 1
    assert not Path(shards_of(str(out))).exists()  # merged into OUT: they were only for resuming

    score_on_ray(cfg, list_images(photos, s3_endpoint))  # a run killed after scoring, before its merge
    shards = sorted(Path(shards_of(str(out))).glob("*.parquet"))
    assert len(shards) == 6  # 40 rows each
    lost = {*read_parquet(str(shards[0])).column("uri").to_pylist(), *read_parquet(str(shards[1])).column("uri").to_pylist()}
    shards[0].unlink()
    shards[1].write_bytes(shards[1].read_bytes()[:200])
    again = predict(cfg)
    assert again.skipped == total - 1 - len(lost - {str(Path(photos[0]) / "broken.jpg")})
    assert again.scored + again.failed == total - again.skipped and again.failed == 1
    rows = read_rows(out)
    assert_same_scores(rows, one_machine)
    assert len(out.read_text().splitlines()) == total + 1
    assert not Path(shards_of(str(out))).exists()


def test_shards_of_another_model_are_refused(cluster, onnx_artifact, photos, tmp_path):
    """Tried: the shards a killed run left for three photos, then a rerun with the model recalibrated (the same
    weights and classes, another temperature). Must hold: a clear error naming what differs, before any work:
    the old probabilities are never merged or decided on under the new model."""
    recalibrated = tmp_path / "recalibrated"
    shutil.copytree(onnx_artifact, recalibrated)
    spec = load_artifact(str(recalibrated)).spec
    write_spec(str(recalibrated), spec.model_copy(update={"temperature": spec.temperature * 1.5}))
    out = tmp_path / "predictions.csv"
    few = [str(p) for p in sorted(Path(photos[0]).glob("*.jpg"))[:3]]
    cfg = PredictConfig(model=onnx_artifact, inputs=few, out=str(out), ray=RayConfig(address=cluster.address))
    score_on_ray(cfg, few)
    with pytest.raises(ValueError, match="scored by another model .its temperature differ.*remove .*or choose another --out"):
        predict(cfg.model_copy(update={"model": str(recalibrated)}))
    assert len(list(Path(shards_of(str(out))).glob("*.parquet"))) == 1 and not out.exists()


def test_parquet_output_has_typed_columns(cluster, onnx_artifact, photos, one_machine, s3_endpoint, tmp_path):
    """Tried: `--out predictions.parquet` over the S3 photos. Must hold: counts as integers and probabilities as
    floats, equal to the one-machine path's."""
    out = tmp_path / "predictions.parquet"
    cfg = PredictConfig(
        model=onnx_artifact, inputs=photos[1:], out=str(out), endpoint_url=s3_endpoint, ray=RayConfig(address=cluster.address)
    )
    predict(cfg)
    table = read_parquet(str(out))
    assert str(table.schema.field("count").type) == "int64" and str(table.schema.field("p_3").type) == "double"
    got = {r["uri"]: r["count"] for r in table.to_pylist()}
    assert got == {u: int(r["count"]) for u, r in one_machine.items() if u.startswith("s3://")}


def test_reconcile_on_ray_decides_like_one_machine(cluster, onnx_artifact, small_manifest, tmp_path):
    """Tried: `reconcile` of the 80 records of a real manifest, with and without `--ray`. Must hold: the same
    count and decision for every record, and no shards left beside the decisions."""
    alone, on_ray = tmp_path / "alone.csv", tmp_path / "ray.csv"
    base = ReconcileConfig(model=onnx_artifact, records=str(small_manifest), out=str(alone), split="all")
    reconcile_records(base)
    report = reconcile_records(base.model_copy(update={"out": str(on_ray), "ray": RayConfig(address=cluster.address)}))
    assert report.summary.total == 80
    one, two = (list(csv.DictReader(p.open(newline=""))) for p in (alone, on_ray))
    assert [(r["id"], r["count"], r["decision"]) for r in one] == [(r["id"], r["count"], r["decision"]) for r in two]
    assert not Path(shards_of(str(on_ray))).exists()


def test_a_threshold_at_a_photos_probability_decides_alike_on_ray(cluster, onnx_artifact, photos, tmp_path):
    """Tried: records of eight real photos, `--accept-at` placed exactly at one record's P(count = recorded) as one
    machine computes it (one whose six-decimal text is below it). Must hold: every record decided alike with and
    without `--ray`, that one accepted: the shards keep the very float64 probabilities one machine decides on."""
    uris = [str(p) for p in sorted(Path(photos[0]).glob("*.jpg"))[:8]]
    scores = {u: s for batch in score_images(load_model(onnx_artifact), uris) for u, s in batch}
    uri, label, p = next((u, c, p) for u, s in scores.items() for c, p in s.probabilities.items() if p > 0.01 and float(f"{p:.6f}") < p)
    records = tmp_path / "records.csv"
    records.write_text("".join(["uri,expected_quantity\n", *(f"{u},{label if u == uri else s.count}\n" for u, s in scores.items())]))
    alone, on_ray = tmp_path / "alone.csv", tmp_path / "ray.csv"
    base = ReconcileConfig(model=onnx_artifact, records=str(records), out=str(alone), accept_at=p, mismatch_at=0.01)
    reconcile_records(base)
    reconcile_records(base.model_copy(update={"out": str(on_ray), "ray": RayConfig(address=cluster.address)}))
    one, two = ({r["uri"]: r["decision"] for r in csv.DictReader(f.open(newline=""))} for f in (alone, on_ray))
    assert one == two and one[uri] == "accept"


def test_actors_that_would_hold_every_cpu_are_refused(cluster, onnx_artifact, photos, tmp_path):
    """Tried: two actors of two CPUs each on the cluster's four CPUs. Must hold: a clear error before any work
    (the photo-reading tasks could never be scheduled, and the job would wait forever), no shard written."""
    out = tmp_path / "refused.csv"
    ray_cfg = RayConfig(address=cluster.address, actors=2, cpus_per_actor=2)
    with pytest.raises(BintallyError, match="leave no CPU for reading photos"):
        predict(PredictConfig(model=onnx_artifact, inputs=photos[:1], out=str(out), ray=ray_cfg))
    assert not Path(shards_of(str(out))).exists() and not out.exists()


def _scorer_pids() -> list[int]:
    """Processes of the model actors (Ray names each worker process after its actor)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"MapWorker(MapBatches(Scorer))" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_a_killed_actor_does_not_stop_the_job(cluster, onnx_artifact, photos, one_machine, tmp_path):
    """Tried: `bintally predict --ray ADDRESS` over the 151 local photos, batch size 4, and SIGKILL to one of the two
    model actors' processes while the job runs. Must hold: the job still exits 0, Ray restarts the actor (a third
    model actor process appears) and retries its batch, every photo ends with exactly one row, and every count
    equals the one-machine path's."""
    out, log = tmp_path / "killed.csv", tmp_path / "job.log"
    cmd = [sys.executable, "-m", "bintally", "predict", onnx_artifact, photos[0], "--out", str(out), "--batch-size", "4"]
    before = set(_scorer_pids())
    with log.open("w") as sink:
        job = subprocess.Popen([*cmd, "--ray", cluster.address], stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(set(_scorer_pids()) - before) < 2 and job.poll() is None:
            time.sleep(0.05)  # one actor per node
        time.sleep(1)  # let it score a batch or two first
        assert job.poll() is None, "the kill should land mid-run"
        running = set(_scorer_pids()) - before
        os.kill(sorted(running)[0], signal.SIGKILL)
        restarted: set[int] = set()
        while time.monotonic() < deadline and not restarted and job.poll() is None:
            restarted = set(_scorer_pids()) - before - running
            time.sleep(0.05)
        job.wait(timeout=300)
    assert job.returncode == 0, log.read_text()
    assert restarted, "Ray should have restarted the killed actor"
    rows = list(csv.DictReader(out.open(newline="")))
    assert len(rows) == len({r["uri"] for r in rows}) == LOCAL_PHOTOS + 1
    assert_same_scores({r["uri"]: r for r in rows}, {u: r for u, r in one_machine.items() if u.startswith(photos[0])})


def test_ray_options_on_the_command_line():
    """`--ray` alone (last, or before another option) means a local Ray; `--ray-actors` without `--ray` is a
    usage error, as is a zero actor count."""
    assert with_ray_default(["predict", "M", "IN", "--out", "o.csv", "--ray"]) == ["predict", "M", "IN", "--out", "o.csv", "--ray", "local"]
    assert with_ray_default(["predict", "M", "--ray", "--out", "o.csv"]) == ["predict", "M", "--ray", "local", "--out", "o.csv"]
    assert with_ray_default(["predict", "--ray", "auto"]) == ["predict", "--ray", "auto"]
    for extra in (["--ray-actors", "2"], ["--ray", "auto", "--ray-actors", "0"]):
        result = CliRunner().invoke(app, ["predict", "M", "IN", "--out", "o.csv", *extra])
        assert result.exit_code == 2, result.output
