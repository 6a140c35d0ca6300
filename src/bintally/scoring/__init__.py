"""Batch scoring: what `bintally predict`, `bintally reconcile` and serving share, below all three.

photos.py       which photos a job names (files, folders, globs, s3:// prefixes, manifests); one photo read
rows.py         a photo's output row (predict's columns), the CSV or Parquet written, resuming a CSV
model.py        the predictor a job runs (model.onnx exported as it loads where the artifact has none)
one_machine.py  scoring in this process: photos read on a thread pool one batch ahead of the model
on_ray.py       scoring on a Ray cluster (the `ray` extra), resumable from Parquet shards
"""
