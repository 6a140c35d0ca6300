"""DDP: the same command under torchrun with 2 CPU ranks (gloo), on one machine and as two nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bintally.data.manifest import read_manifest
from bintally.evaluate.report import evaluate
from bintally.model.artifact import load_artifact
from tests.conftest import free_port


def test_two_cpu_ranks_train_one_model(small_manifest, tiny_args, tmp_path):
    """`torchrun --nproc-per-node 2 bintally train` on CPU: it finishes, rank 0 writes one loadable artifact, and the
    validation metrics cover the whole split (gathered across ranks): one process evaluating the saved weights agrees."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "bintally"]
    command += ["train", str(small_manifest), "--out", str(out), "--epochs", "1", "--device", "cpu", *tiny_args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks share the machine's cores
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("best epoch 1") == 1  # only rank 0 reports

    val = json.loads((out / "history.json").read_text())[0]["val"]
    assert load_artifact(str(out)).spec.classes == [1, 2, 3, 4, 5]
    single = evaluate(str(out), str(small_manifest), str(tmp_path / "report"), split="val", workers=0).metrics
    assert single["n"] == len(read_manifest(str(small_manifest)).split("val"))
    for key in ("accuracy", "within_one", "mae", "rmse", "macro_f1"):
        assert abs(single[key] - val[key]) < 1e-9, key


def test_two_nodes_each_stream_their_own_shards(small_manifest, small_shards, tiny_args, tmp_path):
    """Two torchrun nodes of one CPU rank each, meeting at a c10d rendezvous on 127.0.0.1 as separate machines would,
    train one model from shards (each rank reads every other shard); only the rank-0 node writes and reports."""
    out, port = tmp_path / "two-nodes", free_port()
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    command = [sys.executable, "-m", "torch.distributed.run", *rendezvous, "--rdzv-id", "two-nodes", "-m", "bintally", "train"]
    command += [str(small_manifest), "--out", str(out), "--shards", small_shards, "--epochs", "1", "--device", "cpu", *tiny_args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    errors = [node.communicate(timeout=600)[1] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(e[-3000:] for e in errors)
    assert sum(e.count("best epoch 1") for e in errors) == 1
    assert load_artifact(str(out)).spec.train_config["shards"] == small_shards
