"""Evaluate a model artifact on one split of a manifest and write a report.

REPORT_DIR gets metrics.json, report.md (linking the PNGs beside it),
report.html (self-contained: PNGs embedded as base64) and the PNGs: per-count
accuracy, confusion matrix, accuracy vs coverage, training curves (when the
artifact carries its training history) and the reliability diagram (ECE at
temperature 1 and at the artifact's). Evaluating the test split of the
manifest the model was trained on also records the metrics in the artifact's
model.json: the only place test numbers are produced (model selection uses
the validation split); any other evaluation leaves the artifact alone.
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np
from matplotlib.figure import Figure  # figures without pyplot: no global state, no display
from pydantic import BaseModel

from bintally import storage
from bintally.counts import CountClasses
from bintally.data.manifest import Manifest, read_manifest
from bintally.evaluate.calibrate import class_targets, split_logits
from bintally.evaluate.metrics import constant_answer, expected_calibration_error, metrics_from_logits, reliability
from bintally.model.artifact import ModelArtifact, load_artifact, write_spec
from bintally.model.calibration import softmax

TEST_SPLIT = "test"


class Evaluation(BaseModel):
    metrics: dict
    files: list[str]
    recorded_in_artifact: bool


def calibration_metrics(logits: np.ndarray, counts: np.ndarray, classes: CountClasses, temperature: float) -> dict:
    """ECE and the reliability diagram's bins, without (temperature 1) and with the artifact's temperature."""
    known, targets = class_targets(counts, classes)
    if not known.any():
        return {}
    raw, calibrated = softmax(logits[known]), softmax(logits[known], temperature)
    return {
        "temperature": temperature,
        "ece_before": expected_calibration_error(raw, targets),
        "ece_after": expected_calibration_error(calibrated, targets),
        "reliability_before": reliability(raw, targets),
        "reliability_after": reliability(calibrated, targets),
    }


def trivial_baseline(artifact: ModelArtifact, manifest: Manifest, counts: np.ndarray, split: str) -> dict | None:
    """Always answering the validation rows' most common count (the artifact's validation split of this manifest;
    its training splits where it had none, or where `split`, the one scored, is validation), scored on the evaluated
    bins; None when the manifest has no such rows. Validation, not training: a balanced training sample (the
    quickstart's) has no most common count to speak of, while validation is drawn as the bins are."""
    classes = artifact.spec.count_classes
    config, val = artifact.spec.train_config, artifact.spec.train_config.get("val_split", "val")
    for splits in ([val] if val and val != split else [], config.get("train_splits", ["train"])):
        reference = [r.count for name in splits for r in manifest.split(name) if classes.contains(r.count)]
        if reference:
            return constant_answer(reference, counts, classes)
    return None


def predict_split(artifact: ModelArtifact, manifest_url: str, split: str, device: str, batch_size: int, workers: int) -> dict:
    manifest = read_manifest(manifest_url)
    try:
        logits, counts = split_logits(artifact, manifest, split, device, batch_size, workers)
    except ValueError as exc:
        raise ValueError(f"{manifest_url}: {exc}") from exc
    classes = artifact.spec.count_classes
    known, _ = class_targets(counts, classes)  # a closed model is scored on the bins it can count
    if not known.any():
        raise ValueError(f"{manifest_url}: no {split!r} row has a count among the model's classes {classes.labels}")
    logits, counts = logits[known], counts[known]
    metrics = metrics_from_logits(logits / artifact.spec.temperature, counts, classes)
    return {
        **metrics,
        "classes": classes.labels,
        "calibration": calibration_metrics(logits, counts, classes, artifact.spec.temperature),
        "baseline": trivial_baseline(artifact, manifest, counts, split),
        "split": split,
        "manifest": manifest_url,
        "manifest_digest": manifest.digest(),
        "same_manifest_as_training": manifest.digest() == artifact.spec.manifest_digest,
        "model": {"name": artifact.spec.name, "version": artifact.spec.version},
    }


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plot_per_count(metrics: dict) -> bytes:
    counts, accuracy = list(metrics["per_count"]), list(metrics["per_count"].values())
    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    ax.bar(counts, accuracy, color="#4C72B0")
    ax.axhline(metrics["accuracy"], color="k", linestyle="--", linewidth=1, label=f"overall {metrics['accuracy']:.1%}")
    ax.set(xlabel="recorded count", ylabel="accuracy", ylim=(0, 1), title="Accuracy per count")
    ax.legend()
    return _png(fig)


def plot_confusion(metrics: dict) -> bytes:
    labels, matrix = metrics["confusion"]["labels"], metrics["confusion"]["matrix"]
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels)
    ax.set(xlabel="predicted count", ylabel="recorded count", title="Confusion matrix")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            ax.text(j, i, n, ha="center", va="center", color="white" if n > peak / 2 else "black", fontsize=8)
    return _png(fig)


def plot_coverage(metrics: dict) -> bytes:
    coverage = metrics["coverage"]
    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    ax.plot([int(x) for x in coverage], list(coverage.values()), marker="o")
    ax.set(xlabel="% of bins kept (most confident first)", ylabel="accuracy", ylim=(0, 1), title="Accuracy vs coverage")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_reliability(calibration: dict) -> bytes:
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="k", linestyle="--", linewidth=1, label="perfectly calibrated")
    for when, label in (("before", "temperature 1"), ("after", f"temperature {calibration['temperature']:.2f}")):
        r = calibration[f"reliability_{when}"]
        ax.plot(r["confidence"], r["accuracy"], marker="o", label=f"{label}: ECE {calibration[f'ece_{when}']:.3f}")
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="Reliability")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_history(history: list[dict]) -> bytes:
    epochs = [h["epoch"] + 1 for h in history]
    fig = Figure(figsize=(9, 3.2))
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    acc_ax.plot(epochs, [h["train_accuracy"] for h in history], label="train")
    if any(h["val"] for h in history):
        loss_ax.plot(epochs, [h["val"].get("loss") for h in history], label="validation")
        acc_ax.plot(epochs, [h["val"].get("accuracy") for h in history], label="validation")
    loss_ax.set(xlabel="epoch", title="Loss")
    acc_ax.set(xlabel="epoch", title="Accuracy", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.legend()
        ax.grid(alpha=0.3)
    return _png(fig)


def summary_rows(metrics: dict) -> list[tuple[str, str]]:
    rows = [
        ("bins", f"{metrics['n']:,}"),
        ("accuracy", f"{metrics['accuracy']:.1%}"),
        ("within one", f"{metrics['within_one']:.1%}"),
        ("MAE", f"{metrics['mae']:.3f}"),
        ("RMSE", f"{metrics['rmse']:.3f}"),
        ("macro-F1", f"{metrics['macro_f1']:.3f}"),
    ]
    rows += [(f"accuracy, count {c}", f"{a:.1%}") for c, a in metrics["per_count"].items()]
    rows += [
        (f"counts {name}: accuracy / within one / RMSE", f"{r['accuracy']:.1%} / {r['within_one']:.1%} / {r['rmse']:.2f} ({r['n']:,} bins)")
        for name, r in metrics.get("ranges", {}).items()
    ]
    if "small_counts_only" in metrics:
        s = metrics["small_counts_only"]
        among = f"{s['accuracy']:.1%} / {s['within_one']:.1%} / {s['rmse']:.2f}"
        rows.append(("counts 1-5 answered among 1-5 (as a 1-5 model answers)", among))
    if "more_than_5_auc" in metrics:
        rows.append(("telling more than 5 from 5 or fewer (AUC)", f"{metrics['more_than_5_auc']:.3f}"))
    rows += [(f"telling {pair.replace('-', ' from ')} (AUC)", f"{auc:.3f}") for pair, auc in metrics.get("neighbour_auc", {}).items()]
    if metrics.get("baseline"):
        b = metrics["baseline"]
        rows.append((f"always answering {b.get('label', b['answer'])} (trivial)", f"{b['accuracy']:.1%}, within one {b['within_one']:.1%}"))
    if metrics.get("calibration"):
        c = metrics["calibration"]
        rows += [("temperature", f"{c['temperature']:.3f}"), ("ECE at temperature 1", f"{c['ece_before']:.3f}")]
        rows += [("ECE calibrated", f"{c['ece_after']:.3f}")]
    return rows


def render_markdown(metrics: dict, title: str, plots: dict[str, bytes]) -> str:
    lines = [f"# {title}", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(metrics)]
    lines += ["", *(f"![{name}]({name}.png)" for name in plots), ""]
    return "\n".join(lines)


def render_html(metrics: dict, title: str, plots: dict[str, bytes]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in summary_rows(metrics))
    images = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></figure>' for name, png in plots.items()
    )
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}td{padding:.2em 1em}figure{display:inline-block}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><table>{rows}</table>{images}</body></html>"
    )


def write_report(out_dir: str, metrics: dict, history: list[dict]) -> list[str]:
    plots = {"per_count": plot_per_count(metrics), "confusion": plot_confusion(metrics), "coverage": plot_coverage(metrics)}
    if metrics.get("calibration"):
        plots["reliability"] = plot_reliability(metrics["calibration"])
    if history:
        plots["training"] = plot_history(history)
    title = f"{metrics['model']['name']} {metrics['model']['version']} on the {metrics['split']} split"
    files = {f"{name}.png": png for name, png in plots.items()}
    files["metrics.json"] = json.dumps(metrics, indent=2).encode()
    files["report.md"] = render_markdown(metrics, title, plots).encode()
    files["report.html"] = render_html(metrics, title, plots).encode()
    for name, data in files.items():
        storage.write_bytes(storage.join(out_dir, name), data)
    return [storage.join(out_dir, name) for name in files]


def evaluate(
    model_url: str, manifest_url: str, out_dir: str, split: str = TEST_SPLIT, device: str = "auto", batch_size: int = 64, workers: int = 2
) -> Evaluation:
    artifact = load_artifact(model_url)
    metrics = predict_split(artifact, manifest_url, split, device, batch_size, workers)
    files = write_report(out_dir, metrics, artifact.history())
    # Only the test split of the manifest the model was trained on describes the model; others stay in their report.
    record = split == TEST_SPLIT and metrics["same_manifest_as_training"]
    if record:
        write_spec(model_url, artifact.spec.model_copy(update={"metrics": metrics}))
    return Evaluation(metrics=metrics, files=files, recorded_in_artifact=record)
