"""What model.json holds (`ModelSpec`), and the names it uses: pure data, importable without torch.

Serving, batch scoring and reconciling read it on ONNX Runtime alone; `model/artifact.py` reads and
writes it beside the weights.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from bintally.counts import CountClasses
from bintally.model.preprocess import Preprocess
from bintally.reconcile.fit import Outcome
from bintally.reconcile.policy import DecisionPolicy

Head = Literal["classify", "ordinal", "regression"]
HEADS: tuple[Head, ...] = ("classify", "ordinal", "regression")
Flip = Literal["left-right", "top-bottom"]  # test-time flips (model/flips.py)
WeightBits = Literal[7, 8]  # an int8 graph's weights in [-64, 64] or [-127, 127] (model/quantize.py)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def unfitted(policy: DecisionPolicy) -> DecisionPolicy:
    """The policy's thresholds and record-error model without the report of how they were fitted."""
    return policy.model_copy(update={"fitted": None})


class PolicyCheck(BaseModel):
    """The artifact's fitted decision policy on records simulated from the check photos' true counts (`reconcile.fit`),
    decided once on fp32's probabilities and once on int8's."""

    policy: DecisionPolicy  # the policy checked (`unfitted`): one fitted since is unchecked
    max_accepted_error: float | None  # its fit's target (None: its report names none)
    fp32: Outcome
    int8: Outcome
    changed_decisions: float  # share of the records that int8 decides otherwise (accept / review / mismatch)

    def described(self) -> str:
        changed = f"{self.changed_decisions:.1%} of records decided otherwise"
        return f"{_accepted_wrong(self.int8)} against fp32's {_accepted_wrong(self.fp32)}, {changed}"


def _accepted_wrong(o: Outcome) -> str:
    return "none accepted" if o.accepted_error is None else f"{o.accepted_error:.1%} of accepted wrong"


class Int8Comparison(BaseModel):
    """The int8 graph against the fp32 one on the same photos (`model.quantize.compare`)."""

    agreement: float  # share of photos on which both graphs give the same count
    accuracy_fp32: float
    accuracy_int8: float
    max_probability_diff: float  # over every photo and count, after the artifact's temperature
    # int8 - fp32 accuracy, 95% interval of the paired difference (None: written before it was recorded)
    accuracy_difference_interval: tuple[float, float] | None = None
    policy_check: PolicyCheck | None = None  # None: no fitted policy to check, or written before policies were checked

    def described(self) -> str:
        """One line for people: how often the counts agree, both accuracies, the interval of their difference."""
        line = f"fp32's count on {self.agreement:.1%}, accuracy {self.accuracy_int8:.1%} against fp32's {self.accuracy_fp32:.1%}"
        if self.accuracy_difference_interval:
            low, high = self.accuracy_difference_interval
            line += f" (int8 - fp32: 95% interval {low * 100:+.1f} to {high * 100:+.1f} points)"
        if self.policy_check:
            line += f"; the decision policy: {self.policy_check.described()}"
        return line


class Int8Check(Int8Comparison):
    """How model.int8.onnx compares with model.onnx, on photos it was not calibrated on (`model.quantize`)."""

    calibration_photos: int
    check_split: str
    check_photos: int
    max_accuracy_drop: float | None = None  # the check's limit (None: written before it was recorded)
    weight_bits: WeightBits = 8  # 8: written before 7-bit weights were the default
    # The check's other limits (`quantize.Int8Config`; None: written before they were)
    probability_diff_limit: float | None = None
    changed_decisions_limit: float | None = None

    def covers(self, policy: DecisionPolicy | None) -> bool:
        """Whether int8 was checked under `policy`: a fitted one must be the policy checked (an unfitted one promises
        nothing to check)."""
        if policy is None or policy.fitted is None:
            return True
        return self.policy_check is not None and self.policy_check.policy == unfitted(policy)


class ModelSpec(BaseModel):
    name: str
    version: str
    created_at: str = Field(default_factory=utc_now)
    backbone: str
    head: Head
    classes: list[int]  # class i is count classes[i]
    open_top: bool = False  # the last class is "classes[-1] or more" (False: written before open classes, or closed)
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

    @property
    def count_classes(self) -> CountClasses:
        return CountClasses(values=self.classes, open_top=self.open_top)
