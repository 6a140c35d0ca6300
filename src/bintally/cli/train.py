"""`bintally train`, `bintally evaluate`, `bintally export`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
import yaml
from rich.table import Table

from bintally import storage
from bintally.cli.app import EndpointOpt, app, console, make_config, progress, reported_errors
from bintally.counts import parse_classes
from bintally.data.images import decode_image
from bintally.evaluate.report import evaluate
from bintally.model.artifact import INT8_FILE, ONNX_FILE, load_artifact
from bintally.model.export import export_onnx
from bintally.model.quantize import Int8Config, export_int8
from bintally.model.spec import Head
from bintally.train.config import RECIPES, Augment, AuxTarget, Device, Monitor, Precision, Strategy, TrainConfig
from bintally.train.loop import StepUpdate, train
from bintally.train.sagemaker import ML_ROOT, run_training_job

DEFAULT = TrainConfig()  # the CLI's defaults are the library's
INT8 = Int8Config()


def is_rank_zero() -> bool:
    """Under torchrun every rank runs this command; only rank 0 prints."""
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def step_progress() -> Iterator[Callable[[StepUpdate], None] | None]:
    """Steps within each epoch with loss and accuracy: a bar on a terminal, a line every 30 s in logs; rank 0 only."""
    if not is_rank_zero():
        yield None
        return
    with progress("train") as update:
        yield lambda u: update(u.step, u.steps, f"epoch {u.epoch + 1}/{u.epochs} loss {u.loss:.3f} acc {u.accuracy:.1%}")


def print_epoch(epoch: int, val: dict[str, float]) -> None:
    shown = ", ".join(f"{k} {v:.3f}" for k, v in val.items())
    console.print(f"epoch {epoch + 1}: validation {shown or '(none)'}")


def chosen_fields(ctx: typer.Context, recipe: str, path: str | None, fields: dict) -> dict:
    """The options' defaults, overridden by the named recipe, then by a YAML config file (e.g. a tuning run's
    best_config.yaml), then by the options given on the command line."""
    if recipe not in RECIPES:
        raise typer.BadParameter(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}", param_hint="--recipe")
    loaded: dict = {}
    if path is not None:
        loaded = yaml.safe_load(storage.read_bytes(path))
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{path} is not a mapping of training settings", param_hint="--config")
        unknown = sorted(set(loaded) - set(TrainConfig.model_fields))
        if unknown:
            raise typer.BadParameter(f"{path} has unknown settings: {', '.join(unknown)}", param_hint="--config")
    # typer ships its own click, so the ParameterSource enum is compared by name.
    given = {k: v for k, v in fields.items() if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
    return {**fields, **RECIPES[recipe], **loaded, **given}


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    manifest: Annotated[
        str | None, typer.Argument(help="manifest to train on; none: run as a SageMaker training job under --sagemaker-root")
    ] = None,
    out: Annotated[str | None, typer.Option("--out", help="run directory; becomes the model artifact")] = None,
    backbone: str = DEFAULT.backbone,
    weights: Annotated[str, typer.Option(help="packaged | imagenet | none | PATH")] = DEFAULT.weights,
    strategy: Annotated[Strategy, typer.Option(help="head (frozen backbone) | full | staged")] = DEFAULT.strategy,
    staged_head_epochs: Annotated[int, typer.Option(min=1, help="with --strategy staged")] = DEFAULT.staged_head_epochs,
    head: Head = DEFAULT.head,
    epochs: Annotated[int, typer.Option(min=1)] = DEFAULT.epochs,
    batch_size: Annotated[int, typer.Option(min=1)] = DEFAULT.batch_size,
    lr: float = DEFAULT.lr,
    backbone_lr_scale: float = DEFAULT.backbone_lr_scale,
    weight_decay: float = DEFAULT.weight_decay,
    warmup_epochs: Annotated[float, typer.Option(help="linear warm-up over this many epochs, then cosine decay")] = DEFAULT.warmup_epochs,
    augment: Annotated[Augment, typer.Option(help="count_safe | original | none")] = DEFAULT.augment,
    augment_strength: float = DEFAULT.augment_strength,
    ordinal_sigma: float = DEFAULT.ordinal_sigma,
    label_smoothing: float = DEFAULT.label_smoothing,
    ema_decay: Annotated[float | None, typer.Option(help="ship an EMA of the weights, this decay; 0: none")] = DEFAULT.ema_decay,
    validate_raw: Annotated[
        bool, typer.Option("--validate-raw", help="with an EMA, validate the raw weights too (the EMA's gain; one more pass an epoch)")
    ] = DEFAULT.validate_raw,
    aux_target: Annotated[
        AuxTarget | None, typer.Option(help="also learn the metadata's summed item volume or weight (not shipped)")
    ] = DEFAULT.aux_target,
    aux_weight: float = DEFAULT.aux_weight,
    image_size: int = DEFAULT.image_size,
    enhance: Annotated[bool, typer.Option(help="UnsharpMask first, as the original system")] = DEFAULT.enhance,
    classes: Annotated[
        str | None, typer.Option(help="closed count classes, e.g. 1-5 or 1,2,3,4,5 (default: from the data, up to --top-class)")
    ] = None,
    top_class: Annotated[
        int, typer.Option(help="K: counts of K or more form one open class, K+ (0: none; ignored with --classes)")
    ] = DEFAULT.top_class or 0,
    train_splits: Annotated[str, typer.Option(help="comma-separated splits to train on")] = "train",
    val_split: Annotated[str, typer.Option(help="validation split, or 'none'")] = "val",
    monitor: Monitor = DEFAULT.monitor,
    patience: int = DEFAULT.patience,
    seed: int = DEFAULT.seed,
    device: Annotated[Device, typer.Option(help="auto | cpu | cuda")] = DEFAULT.device,
    precision: Annotated[Precision, typer.Option(help="auto (bf16 where measured faster) | fp32 | bf16")] = DEFAULT.precision,
    channels_last: bool = DEFAULT.channels_last,
    workers: int = DEFAULT.workers,
    shards: Annotated[
        str | None, typer.Option(help="stream the training photos from these shards (`data shards MANIFEST --out SHARDS`): folder or s3://")
    ] = None,
    shuffle_buffer: Annotated[int, typer.Option(min=1, help="with --shards: photos a worker shuffles among")] = DEFAULT.shuffle_buffer,
    endpoint_url: EndpointOpt = None,
    limit_train: int | None = None,
    limit_val: int | None = None,
    name: str | None = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out from its last checkpoint")] = False,
    recipe: Annotated[str, typer.Option(help=f"named settings: {', '.join(RECIPES)} (train/config.py)")] = "default",
    config: Annotated[
        str | None, typer.Option(help="YAML of training settings (e.g. tune's best_config.yaml); options given here override it")
    ] = None,
    sagemaker_root: Annotated[str, typer.Option(envvar="BINTALLY_SAGEMAKER_ROOT", help="with no MANIFEST: the job's files")] = ML_ROOT,
) -> None:
    """Train a counting model on a manifest; the run directory becomes a model artifact (best validation epoch).
    With --shards, the training photos stream from tar shards written from the manifest (local or s3://).

    With no MANIFEST it runs as SageMaker's `IMAGE train`: data, hyperparameters and the artifact under /opt/ml."""
    if manifest is None:
        with reported_errors(), step_progress() as on_step:
            job = run_training_job(sagemaker_root, on_epoch=print_epoch, on_step=on_step)
        console.print(f"best epoch {job.best_epoch + 1}; model artifact in {job.out_dir}")
        return
    if out is None:
        raise typer.BadParameter("is required with a MANIFEST", param_hint="--out")
    try:
        fields = dict(
            backbone=backbone, weights=weights, strategy=strategy, staged_head_epochs=staged_head_epochs, head=head,
            epochs=epochs, batch_size=batch_size, lr=lr, backbone_lr_scale=backbone_lr_scale, weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            augment=augment, augment_strength=augment_strength, ordinal_sigma=ordinal_sigma,
            label_smoothing=label_smoothing, ema_decay=ema_decay, validate_raw=validate_raw, aux_target=aux_target,
            aux_weight=aux_weight,
            image_size=image_size, enhance=enhance,
            classes=parse_classes(classes) if classes else None, top_class=top_class or None,
            train_splits=train_splits.split(","), val_split=None if val_split == "none" else val_split,
            monitor=monitor, patience=patience, seed=seed, device=device, precision=precision, channels_last=channels_last,
            workers=workers, shuffle_buffer=shuffle_buffer, limit_train=limit_train, limit_val=limit_val, name=name,
        )  # fmt: skip
        cfg = TrainConfig(**chosen_fields(ctx, recipe, config, fields))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if endpoint_url:
        os.environ[storage.ENDPOINT_ENV] = endpoint_url  # every reader of s3:// (loader workers, calibration) resolves it
    with reported_errors(), step_progress() as on_step:
        on_epoch = print_epoch if is_rank_zero() else None
        result = train(manifest, out, cfg, on_epoch=on_epoch, resume=resume, on_step=on_step, shards=shards)
    if not is_rank_zero():
        return
    if result.start_epoch:
        console.print(f"resumed after epoch {result.start_epoch}")
    console.print(f"trained in {result.precision} ({result.precision_reason})")
    best = ", ".join(f"{k} {v:.3f}" for k, v in result.best_val.items())
    stop = " (stopped early)" if result.stopped_early else ""
    console.print(f"best epoch {result.best_epoch + 1}{stop}: {best or 'no validation'}; model artifact in {out}")


@app.command("evaluate")
def evaluate_cmd(
    model: str,
    manifest: str,
    out: Annotated[str, typer.Option("--out", help="report directory")],
    split: Annotated[str, typer.Option(help="train | val | test | all")] = "test",
    device: str = "auto",
    batch_size: int = 64,
    workers: int = 2,
) -> None:
    """Metrics and a report (JSON, Markdown, HTML with plots); the test split's metrics are recorded in the artifact."""
    with reported_errors():
        result = evaluate(model, manifest, out, split=split, device=device, batch_size=batch_size, workers=workers)
    m = result.metrics
    table = Table(title=f"{m['split']} split, {m['n']:,} bins")
    for column in ("accuracy", "within one", "MAE", "RMSE", "macro-F1"):
        table.add_column(column, justify="right")
    table.add_row(f"{m['accuracy']:.1%}", f"{m['within_one']:.1%}", f"{m['mae']:.3f}", f"{m['rmse']:.3f}", f"{m['macro_f1']:.3f}")
    console.print(table)
    console.print("per count: " + ", ".join(f"{c}: {a:.1%}" for c, a in m["per_count"].items()))
    if not m["same_manifest_as_training"]:
        console.print("[yellow]note: this manifest differs from the one the model was trained on[/]")
    recorded = "; test metrics recorded in the artifact" if result.recorded_in_artifact else ""
    console.print(f"wrote {out}/report.html, report.md, metrics.json{recorded}")


@app.command("export")
def export_cmd(
    model: str,
    onnx: Annotated[str | None, typer.Option("--onnx", help="ONNX file to write [default: MODEL/model.onnx, which serve picks up]")] = None,
    check_image: Annotated[
        list[str] | None,
        typer.Option(help="photo to check against PyTorch on (repeatable); default: photos of the training manifest"),
    ] = None,
    int8: Annotated[bool, typer.Option("--int8", help="also write MODEL/model.int8.onnx, calibrated and checked on real photos")] = False,
    calibration_photos: Annotated[int, typer.Option(min=1, help="--int8: training photos that set its ranges")] = INT8.calibration_photos,
    check_photos: Annotated[int, typer.Option(min=1, help="--int8: validation photos it is compared with fp32 on")] = INT8.check_photos,
    max_accuracy_drop: Annotated[float, typer.Option(help="--int8: fail (writing nothing) above this loss")] = INT8.max_accuracy_drop,
    probability_diff_limit: Annotated[
        float, typer.Option(help="--int8: fail above this largest change of any count's probability")
    ] = INT8.probability_diff_limit,
    changed_decisions_limit: Annotated[
        float, typer.Option(help="--int8: fail when the fitted decision policy decides more than this share of records otherwise")
    ] = INT8.changed_decisions_limit,
    weight_bits: Annotated[
        int, typer.Option(min=7, max=8, help="--int8: 7 counts the same on every x86 CPU; 8 only with VNNI/AMX")
    ] = INT8.weight_bits,
) -> None:
    """Write the model as ONNX and check it against PyTorch on real photos (fails above 1e-3 max abs difference);
    with --int8, also its int8 graph, checked against the fp32 one on validation photos."""
    target = onnx or storage.join(model, ONNX_FILE)
    with reported_errors():
        if int8 and target != storage.join(model, ONNX_FILE):
            raise ValueError("--int8 quantises MODEL/model.onnx: leave --onnx unset")
        images = [decode_image(storage.read_bytes(path)) for path in check_image] if check_image else None
        diff = export_onnx(load_artifact(model), target, images)
        console.print(f"wrote {target}; max |onnx - torch| on the check photos: {diff:.2e}")
        if int8:
            cfg = make_config(
                Int8Config,
                calibration_photos=calibration_photos,
                check_photos=check_photos,
                max_accuracy_drop=max_accuracy_drop,
                probability_diff_limit=probability_diff_limit,
                changed_decisions_limit=changed_decisions_limit,
                weight_bits=weight_bits,
            )
            check = export_int8(load_artifact(model), cfg)
            console.print(
                f"wrote {storage.join(model, INT8_FILE)} ({check.weight_bits}-bit weights): calibrated on "
                f"{check.calibration_photos} training photos; on "
                f"{check.check_photos} {check.check_split} photos it gives {check.described()}"
            )
