"""Photos from shards become the same model input as from files; each loader worker reads its own shards."""

from __future__ import annotations

import random
from functools import partial

import torch

from bintally.data.manifest import read_manifest
from bintally.data.shards import read_index
from bintally.model.dataset import BinDataset, ShardSource, ShardStream, shard_source, shuffled, stream_batches, worker_shards
from bintally.model.preprocess import Preprocess, resize

PP = Preprocess(size=64)


def test_shards_give_the_same_inputs_and_counts_as_files(small_manifest, small_shards):
    manifest = read_manifest(str(small_manifest))
    rows = {r.id: i for i, r in enumerate(manifest.rows)}
    files = BinDataset(manifest.rows, PP)
    for entry in shard_source(small_shards, manifest, ["train"]).shards[:2]:
        one = ShardSource(small_shards, (entry,))  # one shard, a buffer of one: the shard's own order
        streamed = list(ShardStream(one, set(entry.ids), PP, partial(resize, pp=PP), buffer=1, seed="0"))
        assert len(streamed) == entry.photos
        for key, (img, count) in zip(entry.ids, streamed):
            expected_img, expected_count = files[rows[key]]
            assert count == expected_count and torch.equal(img, expected_img)


def test_a_stream_is_shuffled_the_same_way_for_the_same_seed(small_manifest, small_shards):
    manifest = read_manifest(str(small_manifest))
    keep = {r.id for r in manifest.split("train")}
    source = shard_source(small_shards, manifest, ["train"])
    counts = lambda seed: [c for _, c in ShardStream(source, keep, PP, partial(resize, pp=PP), 16, seed)]  # noqa: E731
    assert counts("3") == counts("3") != counts("4")
    assert sorted(counts("3")) == sorted(r.count for r in manifest.split("train"))


def test_workers_split_the_shards_and_batches_are_counted_per_worker(small_shards):
    shards = read_index(small_shards, "train").shards
    parts = [worker_shards(shards, w, 3) for w in range(3)]
    assert sorted(e.name for p in parts for e in p) == sorted(e.name for e in shards)
    keep = {i for e in shards for i in e.ids}
    assert stream_batches(shards, keep, 1, 8) == len(keep) // 8
    assert stream_batches(shards, keep, 3, 8) == sum(sum(e.photos for e in p) // 8 for p in parts)


def test_shuffled_keeps_every_item():
    items = list(range(100))
    out = list(shuffled(items, 10, random.Random(0)))
    assert sorted(out) == items and out != items
