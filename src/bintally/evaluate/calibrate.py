"""`bintally calibrate MODEL MANIFEST`: fit the temperature and the decision policy on validation data.

With `flips`, test-time flip averaging is set on the artifact first (and its
model.onnx, if any, exported again), so both are fitted on what will serve;
model.int8.onnx, if any, is quantised again and checked under the new temperature and policy.
Both are written into the artifact's model.json, and everything that makes
probabilities or decisions from it uses them (serve, predict, reconcile,
evaluate). Training runs this on its validation split when it ends.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field, field_validator
from torch.utils.data import DataLoader

from bintally import storage
from bintally.counts import CountClasses
from bintally.data.images import decode_image
from bintally.data.manifest import Manifest, read_manifest
from bintally.evaluate.metrics import expected_calibration_error
from bintally.model.artifact import ModelArtifact, load_artifact, write_fit_data, write_spec
from bintally.model.calibration import fit_temperature, nll, softmax
from bintally.model.dataset import BinDataset, scoring_stream, shard_source
from bintally.model.export import CHECK_IMAGES, export_onnx
from bintally.model.inference import pick_device, predict_logits
from bintally.model.quantize import export_int8, same_check
from bintally.model.spec import Flip, Int8Check
from bintally.reconcile.fit import Targets, fit_policy
from bintally.reconcile.policy import DecisionPolicy, RecordErrors


class CalibrateConfig(BaseModel):
    model: str
    manifest: str
    split: str = "val"  # never a selection with test rows: they are for reporting once
    flips: list[Flip] | None = None  # test-time flips to set on the artifact first; None: keep its own
    targets: Targets = Targets()
    errors: RecordErrors = RecordErrors()
    device: str = "auto"
    batch_size: int = Field(64, ge=1)
    workers: int = Field(2, ge=0)
    shards: str | None = None  # `data shards` of this manifest: the split's photos stream from there, not from files

    @field_validator("split")
    @classmethod
    def _held_out(cls, split: str) -> str:
        if split in ("test", "all"):  # `all` holds the test rows too
            raise ValueError(f"split {split!r} holds the test rows, which calibrating would tune on; use val (or another held-out split)")
        return split


class CalibrationReport(BaseModel):
    temperature: float
    split: str
    bins: int
    manifest_digest: str
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float


class Calibration(BaseModel):
    report: CalibrationReport
    policy: DecisionPolicy
    int8: Int8Check | None = None  # the int8 graph's new check, where the artifact had one


def split_logits(
    artifact: ModelArtifact,
    manifest: Manifest,
    split: str,
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 2,
    shards: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The network's raw logits [N, K] (before the temperature) and recorded counts [N] over one split, its photos
    read as files or, with `shards` (`data shards` of this manifest), streamed from its shards in order."""
    rows = manifest.split(split)
    if not rows:
        raise ValueError(f"the manifest has no rows in split {split!r}")
    target, pp = pick_device(device), artifact.spec.preprocess
    photos = BinDataset(rows, pp) if shards is None else scoring_stream(shard_source(shards, manifest, [split]), rows, pp)
    loader = DataLoader(photos, batch_size=batch_size, num_workers=workers)
    return predict_logits(artifact.torch_model(str(target)), loader, target)


def split_probabilities(artifact: ModelArtifact, manifest: Manifest, split: str, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The artifact's calibrated probabilities [N, K] (its temperature) and the recorded counts [N] over the rows of
    one split whose counts have a class: what its decisions are made on."""
    logits, counts = split_logits(artifact, manifest, split, device)
    known, _ = class_targets(counts, artifact.spec.count_classes)
    return softmax(logits[known], artifact.spec.temperature), counts[known]


def class_targets(counts: np.ndarray, classes: CountClasses) -> tuple[np.ndarray, np.ndarray]:
    """Which rows have a count among the classes (any count, with an open top class), and those rows' class indices."""
    known = classes.contains_each(counts)
    return known, classes.index(counts[known])


def calibrate(cfg: CalibrateConfig) -> Calibration:
    artifact = load_artifact(cfg.model)
    if cfg.flips is not None:  # the temperature and policy below are fitted with the flips in place
        artifact.spec = artifact.spec.model_copy(update={"flips": cfg.flips})
    manifest = read_manifest(cfg.manifest)
    logits, counts = split_logits(artifact, manifest, cfg.split, cfg.device, cfg.batch_size, cfg.workers, cfg.shards)
    known, targets = class_targets(counts, artifact.spec.count_classes)
    if not known.any():
        raise ValueError(f"no {cfg.split!r} row has a count among the model's classes {artifact.spec.count_classes.labels}")
    logits, counts = logits[known], counts[known]
    temperature = fit_temperature(logits, targets)
    report = CalibrationReport(
        temperature=temperature,
        split=cfg.split,
        bins=len(targets),
        manifest_digest=manifest.digest(),
        nll_before=nll(logits, targets),
        nll_after=nll(logits, targets, temperature),
        ece_before=expected_calibration_error(softmax(logits), targets),
        ece_after=expected_calibration_error(softmax(logits, temperature), targets),
    )
    policy = fit_policy(
        softmax(logits, temperature), counts.tolist(), artifact.spec.count_classes, cfg.targets, cfg.errors, cfg.split, manifest.digest()
    )
    old_int8 = artifact.spec.int8
    if cfg.flips is not None and artifact.onnx_path:
        # Its graph holds the old flips: export (checked on photos of this split) before the spec says otherwise.
        photos = [decode_image(storage.read_bytes(r.uri)) for r in manifest.split(cfg.split)[:CHECK_IMAGES]]
        export_onnx(artifact, artifact.onnx_path, photos)  # forgets the int8 graph quantised from the old one
    # The old int8 check judged other probabilities and another policy: it goes, whether or not a new one passes.
    update = {"temperature": temperature, "calibration": report.model_dump(), "decision_policy": policy, "int8": None}
    write_spec(cfg.model, artifact.spec.model_copy(update=update))
    write_fit_data(cfg.model, softmax(logits, temperature), counts)  # reconcile fits the policy again on them for a batch
    # An artifact served in int8 stays so: quantised again from its graph and checked (Int8Mismatch if it fails).
    remade = None
    if old_int8 and artifact.onnx_path:
        remade = export_int8(load_artifact(cfg.model), same_check(old_int8))
    return Calibration(report=report, policy=policy, int8=remade)
