"""Training configuration. Defaults are the best known recipe on 2 CPU cores: packaged
EfficientNet-Lite0, full fine-tune, count-safe augmentation, soft ordinal labels.
Named recipes (`RECIPES`, `bintally train --recipe NAME`) change a group of fields at once."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from bintally.data.manifest import Split
from bintally.model.spec import Head

Strategy = Literal["head", "full", "staged"]
Augment = Literal["count_safe", "original", "none"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16"]
AuxTarget = Literal["volume", "weight"]  # the manifest's items_volume / items_weight
Monitor = Literal["accuracy", "within_one", "macro_f1", "mae", "rmse", "loss"]
LOWER_IS_BETTER = {"mae", "rmse", "loss"}

# Changing these on --resume would make the continued run a different experiment.
RESUME_MAY_CHANGE = {"epochs", "patience", "device", "workers", "precision"}


class TrainConfig(BaseModel):
    backbone: str = "tf_efficientnet_lite0"
    weights: str = "packaged"  # packaged | imagenet | none | a local file
    strategy: Strategy = "full"  # head: frozen backbone; full: everything; staged: head first, then everything
    staged_head_epochs: int = Field(2, ge=1)
    head: Head = "ordinal"
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    # lr, backbone_lr_scale, weight_decay, ordinal_sigma and augment_strength are the best trial of a `bintally tune`
    # search (space cpu-screen), rounded to two digits: above the earlier defaults (lr 1e-3, backbone x0.1, weight decay
    # 1e-4, sigma 0.7, augmentation 1.0) on validation at two seeds each (docs/accuracy.md, "Accuracy benchmark").
    lr: float = Field(6.9e-4, gt=0)  # the head's; the backbone's is lr * backbone_lr_scale
    backbone_lr_scale: float = Field(0.89, gt=0, le=1)
    weight_decay: float = Field(1.1e-5, ge=0)
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up from 0 over this many epochs, then cosine decay to 0
    augment: Augment = "count_safe"
    augment_strength: float = Field(0.44, ge=0, le=2)
    ordinal_sigma: float = Field(1.15, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # An exponential moving average of the weights is what gets validated, kept and shipped (None or 0: the raw
    # weights). The average warms up (timm's ModelEmaV3, power 3/4), so
    # early epochs are not dominated by the random head. On by default: at 224 px, 10 epochs, it beat the raw
    # weights of the same run at its best epoch by 1.4 points on validation (43.2% vs 41.8%; 0.7 with the earlier
    # recipe), and led them in 9 of 10 epochs (docs/accuracy.md, "Accuracy benchmark").
    ema_decay: float | None = Field(0.998, ge=0, lt=1)
    # With an EMA, also validate the raw weights every epoch: the EMA's gain measured in the same run (history's
    # `val_raw`; benchmarks/accuracy.py does), at one more validation pass per epoch.
    validate_raw: bool = False
    # An auxiliary target from the ABID metadata, learnt beside the count from the same features by a second linear
    # layer that is not shipped: the bin's summed item volume or weight, which grows with the count (train.auxiliary).
    aux_target: AuxTarget | None = None
    aux_weight: float = Field(0.2, ge=0)  # its loss's weight against the count's
    image_size: int = Field(224, ge=32, le=1024)
    enhance: bool = False  # UnsharpMask before everything, as the original system did
    classes: list[int] | None = None  # explicit count classes, closed (rows outside them are left out); None: top_class
    # K: the training rows' counts below K are classes, and every count of K or more is one open class "K+"
    # (None: every count that occurs, no open class). Why 10: docs/accuracy.md, "Every count".
    top_class: int | None = Field(10, ge=1)
    train_splits: list[Split] = ["train"]
    val_split: Split | None = "val"  # None: no validation, keep the last epoch
    monitor: Monitor = "accuracy"
    patience: int = Field(5, ge=1)  # epochs without a better validation score before stopping
    seed: int = 0
    device: Device = "auto"
    precision: Precision = "auto"  # auto: bf16 autocast on CUDA; on CPUs with native bf16 if measured faster (train.precision)
    channels_last: bool = True
    workers: int = Field(2, ge=0)
    shuffle_buffer: int = Field(1000, ge=1)  # training from shards: photos each loader worker draws its next one from
    limit_train: int | None = Field(None, ge=1)  # a seeded sample of the training rows
    limit_val: int | None = Field(None, ge=1)
    name: str | None = None  # the artifact's name; default: the run directory's name

    @field_validator("ema_decay")
    @classmethod
    def _zero_is_none(cls, value: float | None) -> float | None:
        return value or None  # the CLI's 0 and None both mean the raw weights: one spelling, so a resume compares equal

    @field_validator("train_splits")
    @classmethod
    def _some_splits(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("train_splits needs at least one split")
        return value

    def resume_differences(self, saved: TrainConfig) -> list[str]:
        """Fields that differ from a saved run's config and may not change on resume."""
        mine, theirs = self.model_dump(exclude=RESUME_MAY_CHANGE), saved.model_dump(exclude=RESUME_MAY_CHANGE)
        return [f"{k}: {theirs[k]!r} -> {mine[k]!r}" for k in mine if mine[k] != theirs[k]]


# Named recipes: the fields each sets on top of TrainConfig's defaults (a config file and explicit options
# override them). One definition, shared by `bintally train --recipe` and benchmarks/accuracy.py.
RECIPES: dict[str, dict] = {
    "default": {},  # the best recipe measured on 2 CPU cores (docs/accuracy.md, "Accuracy benchmark")
    "original": {"strategy": "head", "augment": "original", "head": "classify", "ema_decay": None},  # the replaced system's (on Lite0)
    # For a GPU: larger input (288 px scored best on held-out bins, DESIGN.md), more epochs, bigger batches.
    "gpu": {"image_size": 288, "epochs": 20, "batch_size": 64, "workers": 8, "patience": 8},
}
