"""The training loop.

What the original system got wrong, done right here:
- the best checkpoint is a copy of the weights at the best validation epoch,
  written to the run directory as a model artifact the moment it is reached
  (not a reference to the live model, which ends up holding the last epoch);
- early stopping; seeded runs (each epoch reseeds from (seed, epoch), so a
  resumed run draws the same batches and augmentations as an uninterrupted one);
- a checkpoint after every epoch, written atomically, that `resume` continues from;
- a non-finite loss stops the run with a clear error;
- bf16 autocast where it is measured faster (`train.precision`), channels_last, DataLoader workers, DDP under torchrun;
- optionally an EMA of the weights, which is then what is validated and kept (the raw
  weights' validation metrics are recorded beside it, so the two can be compared);
- at the end, the temperature and the decision policy are fitted on the validation split
  (`evaluate.calibrate`) and stored in the artifact.

The run directory is itself the model artifact (see `model.artifact`), plus
`checkpoint.pt` (to resume) and `history.json` (per-epoch metrics).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from pydantic import BaseModel, Field
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from bintally import storage
from bintally.counts import CountClasses
from bintally.data.images import Enhance
from bintally.data.manifest import Manifest, ManifestRow, read_manifest
from bintally.errors import BintallyError
from bintally.evaluate.calibrate import CalibrateConfig, calibrate
from bintally.evaluate.metrics import metrics_from_logits, scalars
from bintally.model.artifact import HISTORY_FILE, save_artifact
from bintally.model.backbones import normalisation
from bintally.model.dataset import (
    BinDataset,
    ShardSource,
    ShardStream,
    sample_rows,
    scoring_stream,
    shard_source,
    stream_batches,
    with_counts,
)
from bintally.model.heads import CountModel, create_model
from bintally.model.inference import predict_logits
from bintally.model.preprocess import Preprocess
from bintally.model.spec import ModelSpec, utc_now
from bintally.train import distributed
from bintally.train.augment import Augmentation
from bintally.train.auxiliary import WithAuxiliary, aux_loss, aux_targets
from bintally.train.config import LOWER_IS_BETTER, TrainConfig
from bintally.train.loss import make_loss
from bintally.train.precision import PrecisionChoice, choose_precision, step_timer

CHECKPOINT_FILE = "checkpoint.pt"


class TrainingDiverged(BintallyError):
    """The loss stopped being a finite number."""


@dataclass(frozen=True)
class StepUpdate:
    """Progress within an epoch (running means over the epoch so far, this rank's batches)."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    accuracy: float


class TrainResult(BaseModel):
    out_dir: str
    best_epoch: int
    best_val: dict[str, float]
    history: list[dict]
    start_epoch: int = 0  # > 0 when the run resumed from a checkpoint
    stopped_early: bool = False
    precision: str = "fp32"  # what the epochs trained in (this call's: a resumed run measures again)
    precision_reason: str = ""


class RunState(BaseModel):
    """What a checkpoint restores besides the weights and optimiser."""

    version: str = Field(default_factory=lambda: utc_now().replace(":", "").replace("-", ""))
    next_epoch: int = 0
    best_epoch: int = -1
    best_score: float | None = None
    best_val: dict[str, float] = {}
    stale_epochs: int = 0
    stopped_early: bool = False
    history: list[dict] = []


@dataclass(frozen=True)
class TrainData:
    train_rows: list[ManifestRow]
    val_rows: list[ManifestRow]
    classes: CountClasses
    shards: ShardSource | None = None  # where the training photos stream from; None: the manifest's files
    val_shards: ShardSource | None = None  # and the validation photos


class Batches:
    """The first `steps` batches of a loader: every DDP rank takes the same number of steps, or the all-reduce hangs."""

    def __init__(self, loader: DataLoader, steps: int):
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator:
        return itertools.islice(self.loader, self.steps)


def select_data(manifest: Manifest, cfg: TrainConfig) -> TrainData:
    """Training and validation rows; count classes from the training rows (up to the open class `top_class`+)
    unless configured."""
    if cfg.val_split in cfg.train_splits:
        raise ValueError(f"the validation split {cfg.val_split!r} is also a training split; set val_split to None to train on it")
    rows = [r for split in cfg.train_splits for r in manifest.split(split)]
    classes = CountClasses(values=cfg.classes) if cfg.classes else CountClasses.from_counts((r.count for r in rows), cfg.top_class)
    train_rows = sample_rows(with_counts(rows, classes), cfg.limit_train, cfg.seed)
    val_rows = sample_rows(with_counts(manifest.split(cfg.val_split), classes), cfg.limit_val, cfg.seed) if cfg.val_split else []
    if not train_rows:
        raise ValueError(f"the manifest has no rows with counts {classes.labels} in splits {cfg.train_splits}")
    if cfg.val_split and not val_rows:
        raise ValueError(
            f"the manifest has no {cfg.val_split!r} rows with counts {classes.labels}; set val_split to None to train without validation"
        )
    return TrainData(train_rows, val_rows, classes)


def preprocess_for(cfg: TrainConfig) -> Preprocess:
    mean, std = normalisation(cfg.backbone)
    return Preprocess(size=cfg.image_size, mean=mean, std=std, enhance=Enhance() if cfg.enhance else None)


def read_checkpoint(out_dir: str, cfg: TrainConfig, resume: bool) -> dict | None:
    """The run's last checkpoint if resuming; refuses to overwrite a run otherwise."""
    url = storage.join(out_dir, CHECKPOINT_FILE)
    if not storage.exists(url):
        return None
    if not resume:
        raise FileExistsError(f"{out_dir} already holds a training run: pass --resume to continue it, or choose another --out")
    checkpoint = torch.load(io.BytesIO(storage.read_bytes(url)), map_location="cpu", weights_only=True)
    changed = cfg.resume_differences(TrainConfig.model_validate(checkpoint["config"]))
    if changed:
        raise ValueError(f"cannot resume {out_dir} with a different configuration: {'; '.join(changed)}")
    return checkpoint


def epoch_seed(seed: int, epoch: int) -> int:
    """Every epoch's draws (batch order, augmentation) come from this seed alone: resuming repeats them."""
    return seed * 100_003 + epoch


def backbone_trainable(cfg: TrainConfig, epoch: int) -> bool:
    return cfg.strategy == "full" or (cfg.strategy == "staged" and epoch >= cfg.staged_head_epochs)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning rate's factor after `step` optimiser steps: linear warm-up, then a cosine to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        done = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    return factor


class Trainer:
    """One run: model, optimiser and schedule, on one rank."""

    def __init__(self, cfg: TrainConfig, data: TrainData, pp: Preprocess, ctx: distributed.Context):
        self.cfg, self.data, self.pp, self.ctx = cfg, data, pp, ctx
        torch.manual_seed(cfg.seed)  # the fresh head's initialisation
        self.model: CountModel = create_model(cfg.backbone, cfg.head, data.classes.values, cfg.weights)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(ctx.device, memory_format=self.memory_format)  # type: ignore[call-overload]
        self.class_values = self.model.class_values
        # With an auxiliary target, what trains is the model plus its extra layer; what is kept is the model.
        self.aux = WithAuxiliary(self.model).to(ctx.device) if cfg.aux_target else None
        self.aux_values = aux_targets(data.train_rows, cfg.aux_target) if cfg.aux_target else None
        self.loss_fn = make_loss(cfg, self.class_values)
        self.precision = self._choose_precision()
        self.optimizer = torch.optim.AdamW(
            [
                {"params": self.model.backbone.parameters(), "lr": cfg.lr * cfg.backbone_lr_scale},
                {"params": [*self.model.head.parameters(), *(self.aux.aux.parameters() if self.aux else [])], "lr": cfg.lr},
            ],
            weight_decay=cfg.weight_decay,
        )
        self.steps_per_epoch = len(self.train_loader(0))
        schedule = warmup_cosine(round(cfg.warmup_epochs * self.steps_per_epoch), cfg.epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay, use_warmup=True, warmup_power=3 / 4) if cfg.ema_decay else None

    def _choose_precision(self) -> PrecisionChoice:
        cfg, ctx = self.cfg, self.ctx
        timer = lambda: step_timer(self.model, cfg.batch_size, cfg.image_size, self.memory_format)  # noqa: E731
        choice = choose_precision(cfg.precision, ctx.device, timer)
        if cfg.precision == "auto" and ctx.distributed:  # every rank trains in the same precision: the majority's
            (votes,) = distributed.sum_across(ctx, [float(choice.bf16)])
            choice = PrecisionChoice(2 * votes > ctx.world_size, f"{int(votes)} of {ctx.world_size} ranks measured bf16 faster")
        return choice

    @property
    def kept_model(self) -> torch.nn.Module:
        """The weights that are validated, selected and saved: the EMA's if there is one."""
        return self.ema.module if self.ema else self.model

    def restore(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.ema:
            self.ema.module.load_state_dict(checkpoint["ema"])
        if self.aux:
            self.aux.aux.load_state_dict(checkpoint["aux"])

    def checkpoint(self, state: RunState) -> dict:
        return (
            {
                "config": self.cfg.model_dump(mode="json"),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "state": state.model_dump(mode="json"),
            }
            | ({"ema": self.ema.module.state_dict()} if self.ema else {})
            | ({"aux": self.aux.aux.state_dict()} if self.aux else {})
        )

    def _loader(
        self, rows: list[ManifestRow], transform: Augmentation | None, epoch: int, shuffle: bool, extras: list[float] | None = None
    ) -> DataLoader:
        dataset = BinDataset(rows, self.pp, transform, extras)
        sampler: DistributedSampler | None = None
        if shuffle and self.ctx.distributed:
            sampler = DistributedSampler(dataset, self.ctx.world_size, self.ctx.rank, shuffle=True, seed=self.cfg.seed)
            sampler.set_epoch(epoch)
        shard = len(sampler) if sampler else len(dataset)
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            generator=torch.Generator().manual_seed(epoch_seed(self.cfg.seed, epoch)),
            num_workers=self.cfg.workers,
            pin_memory=self.ctx.device.type == "cuda",
            drop_last=shuffle and shard > self.cfg.batch_size,  # BatchNorm cannot train on a last batch of one
        )

    def train_loader(self, epoch: int) -> DataLoader | Batches:
        augment = Augmentation(self.cfg.augment, self.pp, self.cfg.augment_strength)
        if self.data.shards:
            return self._stream(self.data.shards, augment, epoch)
        return self._loader(self.data.train_rows, augment, epoch, shuffle=True, extras=self.aux_values)

    def _stream(self, source: ShardSource, transform: Augmentation, epoch: int) -> Batches:
        """The training photos from shards: rank r reads every world-size-th shard, each of its loader workers a share
        of those; as many batches as the rank with the fewest has."""
        cfg, ctx = self.cfg, self.ctx
        keep = {r.id for r in self.data.train_rows}
        extras = dict(zip((r.id for r in self.data.train_rows), self.aux_values)) if self.aux_values else None
        per_rank = [source.shards[rank :: ctx.world_size] for rank in range(ctx.world_size)]
        steps = min(stream_batches(shards, keep, max(cfg.workers, 1), cfg.batch_size) for shards in per_rank)
        if not steps:
            raise ValueError(
                f"{len(source.shards)} shards give some rank no full batch of {cfg.batch_size} over {max(cfg.workers, 1)} loader "
                "workers: write smaller shards (--photos-per-shard) or use fewer workers"
            )
        seed = f"{epoch_seed(cfg.seed, epoch)}:{ctx.rank}"
        stream = ShardStream(replace(source, shards=per_rank[ctx.rank]), keep, self.pp, transform, cfg.shuffle_buffer, seed, extras)
        loader = DataLoader(
            stream,
            batch_size=cfg.batch_size,
            generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch)),
            num_workers=cfg.workers,
            pin_memory=ctx.device.type == "cuda",
            drop_last=True,
        )
        return Batches(loader, steps)

    def _network(self, epoch: int) -> torch.nn.Module:
        """The model set up for this epoch's strategy: frozen or trainable backbone, DDP-wrapped if distributed."""
        trainable = backbone_trainable(self.cfg, epoch)
        network = self.aux or self.model
        self.model.backbone.requires_grad_(trainable)
        network.train()
        if not trainable:
            self.model.backbone.eval()  # a frozen backbone keeps its ImageNet BatchNorm statistics
        if not self.ctx.distributed:
            return network
        device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return DistributedDataParallel(network, device_ids=device_ids)

    def train_epoch(self, epoch: int, on_step: Callable[[StepUpdate], None] | None) -> dict[str, float]:
        torch.manual_seed(epoch_seed(self.cfg.seed, epoch))
        network, loader = self._network(epoch), self.train_loader(epoch)
        loss_sum, correct, seen = 0.0, 0.0, 0.0
        for step, (x, counts, *extras) in enumerate(loader, start=1):
            x = x.to(self.ctx.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            target = self.targets(counts)
            with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.precision.bf16):
                out = network(x)
            logits = (out[0] if self.aux else out).float()
            loss = self.loss_fn(logits, target)
            if self.aux:
                loss = loss + self.cfg.aux_weight * aux_loss(out[1].float(), extras[0].to(self.ctx.device))
            self._check_finite(loss, epoch, step)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            if self.ema:
                self.ema.update(self.model, step=epoch * self.steps_per_epoch + step)
            loss_sum += loss.item() * len(x)
            correct += (logits.argmax(1) == target).sum().item()
            seen += len(x)
            if on_step:
                on_step(StepUpdate(epoch, self.cfg.epochs, step, len(loader), loss_sum / seen, correct / seen))
        loss_sum, correct, seen = distributed.sum_across(self.ctx, [loss_sum, correct, seen])
        return {"loss": loss_sum / seen, "accuracy": correct / seen}

    def _check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        # Reduced across ranks so that every rank stops together rather than waiting on a dead one.
        (bad,) = distributed.sum_across(self.ctx, [float(not torch.isfinite(loss))])
        if bad:
            raise TrainingDiverged(
                f"the loss became {loss.item()} at epoch {epoch + 1}, step {step}: training diverged. "
                f"Lower the learning rate (now {self.cfg.lr:g}) or check the data."
            )

    def targets(self, counts: torch.Tensor) -> torch.Tensor:
        """Recorded counts -> class indices (every training and validation row has a count among the classes)."""
        return torch.from_numpy(self.data.classes.index(counts.cpu().numpy())).to(self.ctx.device)

    def val_loader(self) -> DataLoader:
        """This rank's share of the validation photos, each once: every world-size-th row of the files, or every
        world-size-th shard (read in order: no shuffle buffer)."""
        ctx, source = self.ctx, self.data.val_shards
        if source is None:
            return self._loader(self.data.val_rows[ctx.rank :: ctx.world_size], None, 0, shuffle=False)
        mine = replace(source, shards=source.shards[ctx.rank :: ctx.world_size])
        return DataLoader(scoring_stream(mine, self.data.val_rows, self.pp), batch_size=self.cfg.batch_size, num_workers=self.cfg.workers)

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        """Scalar metrics and loss over the whole validation split: each rank predicts its share, every rank gets all.
        In float32 under any --precision: what is validated is what is served."""
        logits, counts = predict_logits(model, self.val_loader(), self.ctx.device)
        parts = [p for p in distributed.gather(self.ctx, (logits, counts)) if len(p[1])]
        logits, counts = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        metrics = scalars(metrics_from_logits(logits, counts, self.data.classes))
        loss = self.loss_fn(torch.from_numpy(logits).to(self.ctx.device), self.targets(torch.from_numpy(counts)))
        return {**metrics, "loss": loss.item()}


def update_best(state: RunState, cfg: TrainConfig, epoch: int, val: dict[str, float]) -> bool:
    """Record the epoch if it is the best so far (without validation, the latest is); count stale epochs."""
    score = val.get(cfg.monitor)
    lower = cfg.monitor in LOWER_IS_BETTER
    if score is None or state.best_score is None or (score < state.best_score if lower else score > state.best_score):
        state.best_epoch, state.best_score, state.best_val, state.stale_epochs = epoch, score, val, 0
        return True
    state.stale_epochs += 1
    state.stopped_early = state.stale_epochs >= cfg.patience
    return False


def write_run_files(trainer: Trainer, state: RunState, spec: ModelSpec, out_dir: str, improved: bool) -> None:
    """The best weights as the artifact (a copy, on disk), the history, then the checkpoint to resume from."""
    if improved:
        save_artifact(out_dir, trainer.kept_model, spec)
    storage.write_bytes(storage.join(out_dir, HISTORY_FILE), json.dumps(state.history, indent=1).encode())
    buf = io.BytesIO()
    torch.save(trainer.checkpoint(state), buf)
    storage.write_bytes(storage.join(out_dir, CHECKPOINT_FILE), buf.getvalue())  # atomic: temp file + rename


def run_epochs(
    trainer: Trainer,
    state: RunState,
    spec: ModelSpec,
    out_dir: str,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
    on_step: Callable[[StepUpdate], None] | None,
) -> None:
    for epoch in range(state.next_epoch, trainer.cfg.epochs):
        if state.stopped_early:
            break
        started = time.monotonic()
        fit = trainer.train_epoch(epoch, on_step)
        val = trainer.validate(trainer.kept_model) if trainer.data.val_rows else {}
        raw = {"val_raw": trainer.validate(trainer.model)} if trainer.ema and trainer.cfg.validate_raw and val else {}
        state.history.append(
            {
                "epoch": epoch,
                "train_loss": fit["loss"],
                "train_accuracy": fit["accuracy"],
                "lr": trainer.optimizer.param_groups[-1]["lr"],
                "precision": trainer.precision.name,
                "seconds": time.monotonic() - started,
                "val": val,
            }
            | raw
        )
        improved = update_best(state, trainer.cfg, epoch, val)
        state.next_epoch = epoch + 1
        if trainer.ctx.is_main:
            write_run_files(trainer, state, spec, out_dir, improved)
        if on_epoch:
            on_epoch(epoch, val)


def train(
    manifest_url: str,
    out_dir: str,
    cfg: TrainConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    resume: bool = False,
    on_step: Callable[[StepUpdate], None] | None = None,
    shards: str | None = None,
) -> TrainResult:
    """Train on a manifest; `out_dir` becomes a model artifact holding the best-validation weights. With `shards`
    (written by `data shards` from this manifest), the training and validation photos stream from there, also for
    the final calibration.

    `on_epoch(epoch, val_metrics)` runs on every rank after each epoch, with the
    validation scalars (accuracy, within_one, mae, rmse, macro_f1, loss; empty
    without a validation split); what it raises (e.g. optuna.TrialPruned)
    propagates. `on_step` reports progress within epochs, on rank 0 only.
    """
    manifest = read_manifest(manifest_url)
    data = select_data(manifest, cfg)
    if shards:
        val_shards = shard_source(shards, manifest, [cfg.val_split]) if cfg.val_split else None
        data = replace(data, shards=shard_source(shards, manifest, cfg.train_splits), val_shards=val_shards)
    pp = preprocess_for(cfg)
    checkpoint = read_checkpoint(out_dir, cfg, resume)
    with distributed.context(cfg.device) as ctx:
        trainer = Trainer(cfg, data, pp, ctx)
        state = RunState()
        if checkpoint:
            trainer.restore(checkpoint)
            state = RunState.model_validate(checkpoint["state"])
        spec = ModelSpec(
            name=cfg.name or os.path.basename(out_dir.rstrip("/")),
            version=state.version,
            backbone=cfg.backbone,
            head=cfg.head,
            classes=data.classes.values,
            open_top=data.classes.open_top,
            preprocess=pp,
            train_config={"manifest": manifest_url, **({"shards": shards} if shards else {}), **cfg.model_dump(mode="json")},
            manifest_digest=manifest.digest(),
        )
        start_epoch = state.next_epoch
        run_epochs(trainer, state, spec, out_dir, on_epoch, on_step if ctx.is_main else None)
        if ctx.is_main and cfg.val_split:
            # The best epoch's probabilities and decision policy, fitted on the same validation split.
            calibrate(
                CalibrateConfig(
                    model=out_dir, manifest=manifest_url, split=cfg.val_split, device=cfg.device, workers=cfg.workers, shards=shards
                )
            )
        distributed.barrier(ctx)  # rank 0's files are complete before any rank returns
    return TrainResult(
        out_dir=out_dir,
        best_epoch=state.best_epoch,
        best_val=state.best_val,
        history=state.history,
        start_epoch=start_epoch,
        stopped_early=state.stopped_early,
        precision=trainer.precision.name,
        precision_reason=trainer.precision.reason,
    )
