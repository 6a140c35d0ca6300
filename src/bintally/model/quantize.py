"""int8 static quantisation of the exported ONNX graph (`bintally export --int8`).

ONNX Runtime's static quantiser inserts QuantizeLinear/DequantizeLinear pairs (QDQ) with
per-channel int8 weights and uint8 activations, whose ranges come from running real
training photos through the fp32 graph; before that, each convolution's bias is corrected
for the shift its weights' rounding would add to its mean output (`correct_weight_bias`).
The int8 graph is then checked against the fp32
one on validation photos (count agreement, accuracy of each against the recorded counts, the largest
probability difference, and the artifact's fitted decision policy decided on each graph's probabilities)
and written only if it passes every limit of `Int8Config`; the check is kept in model.json.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from bintally import storage
from bintally.accuracy import paired_accuracy_difference
from bintally.data.images import decode_image
from bintally.data.manifest import ManifestRow, read_manifest
from bintally.errors import BintallyError
from bintally.model.artifact import INT8_FILE, ONNX_INPUT, ONNX_OUTPUT, ModelArtifact, write_spec
from bintally.model.calibration import softmax
from bintally.model.predictor import onnx_session
from bintally.model.preprocess import Preprocess, prepare_batch
from bintally.model.spec import Int8Check, Int8Comparison, ModelSpec, PolicyCheck, WeightBits, unfitted
from bintally.reconcile.fit import decided, outcome, simulate

BATCH = 8
# Weights in [-64, 64] count the same on every x86 CPU; [-127, 127] come a little closer to fp32 with VNNI or AMX,
# but overflow AVX2's 16-bit sums without them (`hardware.int8_pays`).
DEFAULT_WEIGHT_BITS: WeightBits = 7
WEIGHT_QMAX = {7: 64, 8: 127}  # ONNX Runtime's symmetric int8 weight ranges, reduced and full


class Int8Config(BaseModel):
    calibration_photos: int = Field(64, ge=1)  # training-split photos whose activations set the int8 ranges
    check_photos: int = Field(500, ge=1)  # validation-split photos the int8 graph is compared with fp32 on
    # On the check photos; above it nothing is written. It catches a broken graph: on a few hundred photos, chance
    # alone moves the difference by 1-2 points.
    max_accuracy_drop: float = Field(0.03, ge=0, le=1)
    # Largest |int8 - fp32| probability of any count on any check photo (after the temperature). Measured on 500
    # validation photos: 0.05-0.20 for graphs that kept fp32's counts (0.198: the default model, 7-bit weights),
    # 0.272 for its 8-bit one (94% same count); 0.169, 0.205 and 0.286 for graphs that kept 79-83%
    # (benchmarks/results/int8-variants-*.json, precision-*.json). One extreme of thousands does not tell those
    # apart, so the limit only refuses a graph far off; the accuracy and policy limits judge the rest.
    probability_diff_limit: float = Field(0.3, gt=0, le=1)
    # Of the records simulated from the check photos, the share the fitted policy may decide otherwise on int8's
    # probabilities than on fp32's. Measured on the default model: 0.7-0.9% for graphs that kept fp32's counts,
    # 1.6% for one that did not (int8-variants-default-policy-val.json); one photo's records weigh 0.2% of 500.
    changed_decisions_limit: float = Field(0.02, ge=0, le=1)
    weight_bits: WeightBits = DEFAULT_WEIGHT_BITS


def same_check(check: Int8Check) -> Int8Config:
    """The settings an earlier int8 check ran with, to quantise a new graph of the same model alike."""
    names = ("calibration_photos", "check_photos", "weight_bits", "max_accuracy_drop", "probability_diff_limit", "changed_decisions_limit")
    return Int8Config(**{name: getattr(check, name) for name in names if getattr(check, name) is not None})


class Int8Mismatch(BintallyError):
    """The int8 graph fails a limit of its check (accuracy, probabilities, decisions) on the check photos."""


def _batches(rows: list[ManifestRow], pp: Preprocess) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), BATCH):
        yield prepare_batch([decode_image(storage.read_bytes(r.uri)) for r in rows[start : start + BATCH]], pp)


class _PhotoReader:
    """ONNX Runtime's CalibrationDataReader protocol: feeds preprocessed photos, a batch at a time."""

    def __init__(self, batches: Sequence[np.ndarray]):
        self.batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {ONNX_INPUT: batch}


def photo_rows(artifact: ModelArtifact, cfg: Int8Config) -> tuple[list[ManifestRow], str, list[ManifestRow]]:
    """Calibration rows (training split) and check rows (validation split, else test) of the model's manifest."""
    url = artifact.spec.train_config.get("manifest")
    if not url or not storage.exists(url):
        raise ValueError(f"{artifact.path} records no readable training manifest to calibrate int8 on")
    manifest, classes = read_manifest(url), artifact.spec.count_classes
    calibration = [r for r in manifest.split("train") if classes.contains(r.count)][: cfg.calibration_photos]
    split = "val" if manifest.split("val") else "test"
    check = [r for r in manifest.split(split) if classes.contains(r.count)][: cfg.check_photos]
    if not calibration or not check:
        raise ValueError(f"{url} needs training-split and validation-split photos of counts {classes.labels} to calibrate and check int8")
    return calibration, split, check


Fp32Group = Literal["depthwise", "head"]  # parts of the graph that may stay float32 (`keep_fp32`)


def fp32_nodes(path: Path, groups: Sequence[Fp32Group]) -> list[str]:
    """The names of the nodes in `groups`: `depthwise`, the depthwise (grouped) convolutions; `head`, every node
    after the last convolution (pooling, flatten, the count layer), so the logits are not rounded to int8."""
    import onnx

    nodes = list(onnx.load(path).graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    chosen: list[str] = []
    if "depthwise" in groups:
        chosen += [nodes[i].name for i in convs if any(a.name == "group" and a.i > 1 for a in nodes[i].attribute)]
    if "head" in groups:
        chosen += [n.name for n in nodes[convs[-1] + 1 :] if n.op_type != "Clip"]  # the last conv's ReLU6 stays with it
    return chosen


Ranges = Literal["minmax", "entropy", "percentile"]  # how activation ranges are read off the calibration photos


def conv_input_means(path: Path, calibration: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Each convolution input's per-channel mean over the calibration batches (the fp32 graph at `path`)."""
    import onnx

    model = onnx.load(path)
    names = list(dict.fromkeys(n.input[0] for n in model.graph.node if n.op_type == "Conv"))
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in outputs)
    session = onnx_session(model.SerializeToString(), cpu_only=True)
    per_photo: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for batch in calibration:
        for name, value in zip(names, session.run(names, {ONNX_INPUT: batch})):
            per_photo[name].append(value.mean(axis=(2, 3)))
    return {name: np.concatenate(means).mean(axis=0) for name, means in per_photo.items()}


def correct_weight_bias(
    path: Path, calibration: Sequence[np.ndarray], keep_fp32: Sequence[str] = (), weight_bits: WeightBits = DEFAULT_WEIGHT_BITS
) -> None:
    """Bias correction (Nagel et al., "Data-Free Quantization", 2019), rewriting the fp32 graph at `path`.

    Rounding a convolution's weights to int8 shifts the mean of its output by (W_int8 - W) . E[x], the same for
    every photo; on a fine-tuned Lite0 that shift tilts the count logits (int8 answered higher counts, and lost
    3.6 points on validation). Subtracting it from the bias, with E[x] measured on the calibration batches,
    halved that loss. The rounding simulated is the quantiser's own: symmetric per-channel, in [-64, 64] for 7
    `weight_bits`, [-127, 127] for 8; the `keep_fp32` nodes keep their weights, so their biases stay.
    """
    import onnx
    from onnx import numpy_helper

    means = conv_input_means(path, calibration)
    qmax = WEIGHT_QMAX[weight_bits]
    model = onnx.load(path)
    initializers = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.name in keep_fp32 or len(node.input) < 3 or node.input[2] not in initializers:
            continue  # ONNX Runtime's pre-processing folds every batch norm into a bias; a conv without one is left
        w = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
        scale = np.abs(w).reshape(len(w), -1).max(axis=1) / qmax
        scale[scale == 0] = 1
        scale = scale.reshape(-1, *[1] * (w.ndim - 1))
        error = (np.clip(np.round(w / scale), -qmax, qmax) * scale - w).sum(axis=(2, 3))  # [out, in per group]
        mean = means[node.input[0]].reshape(-1, error.shape[1])  # [groups, in per group]
        shift = (error.reshape(len(mean), -1, error.shape[1]) * mean[:, None, :]).sum(axis=2).reshape(-1)
        b = initializers[node.input[2]]
        b.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(b) - shift).astype(np.float32), b.name))
    onnx.save(model, path)


def quantize_graph(
    fp32_path: str,
    calibration: list[ManifestRow],
    pp: Preprocess,
    keep_fp32: Sequence[Fp32Group] = (),
    ranges: Ranges = "minmax",
    bias_correction: bool = True,
    weight_bits: WeightBits = DEFAULT_WEIGHT_BITS,
) -> bytes:
    """The int8 QDQ graph of `fp32_path`, its activation ranges measured on `calibration` photos by ONNX Runtime's
    `ranges` method (minmax keeps the observed extremes; entropy and percentile clip outliers), the `keep_fp32`
    parts left float32, the convolutions' biases corrected for their weights' rounding first (`bias_correction`),
    the weights in [-64, 64] (7 `weight_bits`) or [-127, 127] (8). Everything is int8 by default: on the 224 px
    default model (500 validation photos), with 8-bit weights, it kept 92.6% of fp32's counts (90.4% uncorrected),
    a float32 head 94.0% at the same speed, float32 depthwise convolutions 92.8% at a third of it, other ranges
    within a point; 7-bit weights 90.6%, the same with AVX2's kernels, where 8-bit ones kept 79%
    (benchmarks/int8_variants.py)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="bintally-int8-") as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        Path(tmp, "fp32.onnx").write_bytes(storage.read_bytes(fp32_path))
        # Shape inference and graph fusions first (Conv+BN+ReLU6 become one Conv), as ONNX Runtime recommends.
        quant_pre_process(Path(tmp, "fp32.onnx"), prepared)
        kept = fp32_nodes(prepared, keep_fp32)
        batches = list(_batches(calibration, pp))  # decoded once, for the bias correction and the ranges
        if bias_correction:
            correct_weight_bias(prepared, batches, kept, weight_bits)
        quantize_static(
            prepared,
            out,
            _PhotoReader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[ranges],
            nodes_to_exclude=kept or None,
            reduce_range=weight_bits == 7,  # ONNX Runtime's name for [-64, 64] weights
        )
        return out.read_bytes()


def compare(fp32_path: str, int8: bytes, rows: list[ManifestRow], artifact: ModelArtifact) -> Int8Comparison:
    spec = artifact.spec
    fp32_session, int8_session = onnx_session(storage.read_bytes(fp32_path), cpu_only=True), onnx_session(int8, cpu_only=True)
    fp32_logits, int8_logits = [], []
    for batch in _batches(rows, spec.preprocess):
        fp32_logits.append(fp32_session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0])
        int8_logits.append(int8_session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0])
    p32 = softmax(np.concatenate(fp32_logits), spec.temperature)
    p8 = softmax(np.concatenate(int8_logits), spec.temperature)
    counts = [r.count for r in rows]
    classes, truth = np.array(spec.classes), spec.count_classes.clip(counts)
    c32, c8 = classes[p32.argmax(1)], classes[p8.argmax(1)]
    _, low, high = paired_accuracy_difference(c32 == truth, c8 == truth)
    return Int8Comparison(
        agreement=float((c32 == c8).mean()),
        accuracy_fp32=float((c32 == truth).mean()),
        accuracy_int8=float((c8 == truth).mean()),
        max_probability_diff=float(np.abs(p32 - p8).max()),
        accuracy_difference_interval=(low, high),
        policy_check=check_policy(p32, p8, counts, spec),
    )


def check_policy(p32: np.ndarray, p8: np.ndarray, counts: list[int], spec: ModelSpec) -> PolicyCheck | None:
    """The artifact's fitted policy on records simulated from the photos' true `counts`, decided on fp32's
    probabilities `p32` and int8's `p8` (the same records, in the same order); None without a fitted policy."""
    policy = spec.decision_policy
    if policy is None or policy.fitted is None:
        return None
    r32, r8 = (simulate(p, counts, spec.count_classes, policy.errors) for p in (p32, p8))
    (a32, f32), (a8, f8) = decided(r32, policy), decided(r8, policy)
    return PolicyCheck(
        policy=unfitted(policy),
        max_accepted_error=policy.fitted.get("targets", {}).get("max_accepted_error"),
        fp32=outcome(r32, policy),
        int8=outcome(r8, policy),
        changed_decisions=float(r32.weight[(a32 != a8) | (f32 != f8)].sum()),
    )


def refusals(compared: Int8Comparison, cfg: Int8Config) -> list[str]:
    """Why the int8 graph must not be written (none: it passes): each limit of `cfg` it fails, in words."""
    c, why = compared, []
    if c.accuracy_fp32 - c.accuracy_int8 > cfg.max_accuracy_drop:
        why.append(f"int8 scores {c.accuracy_int8:.1%} against fp32's {c.accuracy_fp32:.1%} (allowed drop {cfg.max_accuracy_drop:.1%})")
    if c.max_probability_diff > cfg.probability_diff_limit:
        why.append(f"a probability moves by {c.max_probability_diff:.3f} (allowed {cfg.probability_diff_limit:.3f})")
    checked = c.policy_check
    if checked is None:
        return why
    target, e32, e8 = checked.max_accepted_error, checked.fp32.accepted_error or 0.0, checked.int8.accepted_error or 0.0
    if target is not None and e8 > target >= e32:  # a promise fp32 keeps and int8 breaks
        why.append(f"the decision policy accepts {e8:.1%} wrong records on int8 against fp32's {e32:.1%} (its target {target:.1%})")
    if checked.changed_decisions > cfg.changed_decisions_limit:
        changed, allowed = checked.changed_decisions, cfg.changed_decisions_limit
        why.append(f"the decision policy decides {changed:.1%} of records otherwise (allowed {allowed:.1%})")
    return why


def export_int8(artifact: ModelArtifact, cfg: Int8Config | None = None) -> Int8Check:
    """Quantise the artifact's model.onnx to MODEL/model.int8.onnx and record the check in model.json.

    Raises Int8Mismatch (writing nothing) when it fails a limit of `cfg` (`refusals`)."""
    cfg = cfg or Int8Config()
    fp32_path = artifact.onnx_path
    if fp32_path is None:
        raise ValueError(f"{artifact.path} has no model.onnx to quantise; run `bintally export {artifact.path}` first")
    calibration, split, check_rows = photo_rows(artifact, cfg)
    int8 = quantize_graph(fp32_path, calibration, artifact.spec.preprocess, weight_bits=cfg.weight_bits)
    compared = compare(fp32_path, int8, check_rows, artifact)
    check = Int8Check(
        calibration_photos=len(calibration),
        check_split=split,
        check_photos=len(check_rows),
        max_accuracy_drop=cfg.max_accuracy_drop,
        probability_diff_limit=cfg.probability_diff_limit,
        changed_decisions_limit=cfg.changed_decisions_limit,
        weight_bits=cfg.weight_bits,
        **compared.model_dump(),
    )
    if why := refusals(compared, cfg):
        raise Int8Mismatch(f"on {len(check_rows)} {split} photos, {'; '.join(why)}: not written")
    storage.write_bytes(storage.join(artifact.path, INT8_FILE), int8)
    artifact.spec.int8 = check
    write_spec(artifact.path, artifact.spec)
    return check
