"""What model.json holds (`ModelSpec`), and the names it uses: pure data, importable without torch.

Serving, batch scoring and reconciling read it on ONNX Runtime alone; `model/artifact.py` reads and
writes it beside the weights.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from bintally.model.preprocess import Preprocess
from bintally.reconcile.policy import DecisionPolicy

Head = Literal["classify", "ordinal", "regression"]
HEADS: tuple[Head, ...] = ("classify", "ordinal", "regression")
Flip = Literal["left-right", "top-bottom"]  # test-time flips (model/flips.py)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Int8Check(BaseModel):
    """How model.int8.onnx compares with model.onnx, on photos it was not calibrated on (`model.quantize`)."""

    calibration_photos: int
    check_split: str
    check_photos: int
    agreement: float  # share of check photos on which both graphs give the same count
    accuracy_fp32: float
    accuracy_int8: float
    max_probability_diff: float  # over every photo and count, after the artifact's temperature
    max_accuracy_drop: float | None = None  # the check's limit (None: written before it was recorded)


class ModelSpec(BaseModel):
    name: str
    version: str
    created_at: str = Field(default_factory=utc_now)
    backbone: str
    head: Head
    classes: list[int]  # class i is count classes[i]
    preprocess: Preprocess
    train_config: dict = Field(default_factory=dict)
    manifest_digest: str | None = None
    metrics: dict = Field(default_factory=dict)  # test-split metrics, written by `bintally evaluate`
    # Probabilities are softmax(logits / temperature); fitted on validation by `bintally calibrate` (and train).
    temperature: float = Field(1.0, gt=0)
    calibration: dict | None = None  # how the temperature was fitted: `evaluate.calibrate.CalibrationReport`
    decision_policy: DecisionPolicy | None = None  # fitted on validation; None: `DecisionPolicy()`'s defaults
    flips: list[Flip] = []  # test-time augmentation: logits averaged over these flips too (`bintally calibrate --flips`)
    int8: Int8Check | None = None  # set with model.int8.onnx by `bintally export --int8`
