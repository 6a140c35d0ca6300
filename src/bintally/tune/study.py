"""Tuning as an Optuna study: storage, sampler, pruner, the objective, resume and many workers.

One study lives in one database. SQLite beside the run suits one machine; with PostgreSQL any number
of `bintally tune` processes, on any machines, join the same study and draw trials from it.

- A trial trains on `train` and reports each epoch's validation metric to Optuna, which may prune it.
- `trials` counts finished trials (complete or pruned: both are results the sampler learns from).
  Failed trials are not counted, so a resumed study runs until `trials` have finished.
- Every worker sends a heartbeat for its running trial; a trial whose heartbeat stopped (its process
  was killed) is marked FAILED by whichever worker looks next, and its parameters are queued once more.
  A trial another live worker is running keeps its heartbeat and is left alone.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Literal, get_args

import optuna
from optuna.storages import (
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
    fail_stale_trials,
)
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, Field
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bintally import storage
from bintally.data.manifest import read_manifest
from bintally.train.config import LOWER_IS_BETTER, Monitor
from bintally.train.loop import StepUpdate, TrainingDiverged, train
from bintally.tune import optuna_stable_apis
from bintally.tune.space import SearchSpace, load_space, trial_config

# The validation metrics the training loop can monitor, and which way is better.
DIRECTIONS: dict[str, Literal["maximize", "minimize"]] = {m: "minimize" if m in LOWER_IS_BETTER else "maximize" for m in get_args(Monitor)}
Pruner = Literal["median", "hyperband", "none"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
IDLE_POLL_S = 5  # how often a worker with no trial left to start looks at the study again
SETTINGS_ATTR = "bintally"


class TuneError(ValueError):
    """A tuning request that cannot run as asked, with the reason."""


class StudySettings(BaseModel):
    """What makes trials comparable; stored in the study so every worker and resume uses the same."""

    space: SearchSpace
    metric: str
    manifest_digest: str


class TuneConfig(BaseModel):
    manifest: str
    trials: int = Field(ge=1)
    study: str = "bintally"
    out: str | None = None  # trial models and the report; default runs/tune-<study>
    storage: str | None = None  # default: SQLite file study.db in `out`
    space: str | None = None  # packaged name or YAML path/URL; default: the study's own, else 'default'
    metric: str | None = None  # default: the study's own, else accuracy
    pruner: Pruner = "median"
    startup_trials: int = Field(3, ge=0)  # trials the median pruner lets finish before it judges
    warmup_epochs: int = Field(0, ge=0)  # epochs of each trial the median pruner never judges
    heartbeat_s: int = Field(30, ge=1)  # a killed worker's trial is failed after two missed beats


class StudyFull(Exception):
    """Raised by a trial that found the study already had enough trials (two workers raced for the last)."""


def out_dir(study: str, out: str | None) -> str:
    return out or f"runs/tune-{study}"


def storage_url(study: str, out: str | None, url: str | None) -> str:
    """The given storage URL, or a SQLite file beside the run."""
    if url:
        try:
            make_url(url)
        except ArgumentError as exc:
            raise TuneError(f"--storage {url!r} is not a database URL (sqlite:///FILE or postgresql://...)") from exc
        return url
    directory = out_dir(study, out)
    if storage.is_remote(directory):
        raise TuneError(f"--out {directory} is remote: give --storage (sqlite:///FILE or postgresql://...)")
    path = storage.resolve(directory)[1]
    os.makedirs(path, exist_ok=True)
    return f"sqlite:///{os.path.join(path, 'study.db')}"


def _with_driver(url: str) -> str:
    """postgresql:// means psycopg2 (a dependency); SQLAlchemy 2.1 would otherwise look for psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


@optuna_stable_apis()
def open_storage(url: str, heartbeat_s: int | None = None) -> RDBStorage:
    """Optuna's RDB storage; with a heartbeat, trials of killed workers are failed and queued again."""
    engine: dict[str, Any]
    if url.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 60}}  # several local workers wait for the file lock
    else:
        engine = {"pool_pre_ping": True}  # a long trial outlives idle database connections
    retry = RetryHeartbeatStaleTrialCallback(max_retry=1) if heartbeat_s else None
    return RDBStorage(_with_driver(url), engine_kwargs=engine, heartbeat_interval=heartbeat_s, heartbeat_stale_trial_callback=retry)


def shown_url(url: str) -> str:
    """The storage URL with its password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def load_study(url: str, name: str) -> optuna.Study:
    """An existing study, for reports and retraining: its storage is all they need."""
    database = make_url(url).database
    if url.startswith("sqlite") and not (database and os.path.exists(database)):
        raise TuneError(f"no SQLite study database at {database}")
    store = open_storage(url)
    names = optuna.get_all_study_names(store)
    if name not in names:
        raise TuneError(f"no study {name!r} in {shown_url(url)} (it has: {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=name, storage=store)


def study_settings(study: optuna.Study) -> StudySettings:
    if SETTINGS_ATTR not in study.user_attrs:
        raise TuneError(f"study {study.study_name!r} was not made by bintally tune")
    return StudySettings.model_validate(study.user_attrs[SETTINGS_ATTR])


def _pruner(cfg: TuneConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def _requested_settings(cfg: TuneConfig, stored: StudySettings | None) -> StudySettings:
    """The settings asked for, filling what was not asked from the stored study; a mismatch is an error."""
    digest = read_manifest(cfg.manifest).digest()
    space = load_space(cfg.space) if cfg.space else (stored.space if stored else load_space("default"))
    metric = cfg.metric or (stored.metric if stored else "accuracy")
    if metric not in DIRECTIONS:
        raise TuneError(f"unknown metric {metric!r}; one of {', '.join(DIRECTIONS)}")
    asked = StudySettings(space=space, metric=metric, manifest_digest=digest)
    if stored and stored != asked:
        changed = [k for k in StudySettings.model_fields if getattr(stored, k) != getattr(asked, k)]
        raise TuneError(f"study {cfg.study!r} was started with a different {', '.join(changed)}; use a new --study")
    return asked


def open_study(cfg: TuneConfig) -> tuple[optuna.Study, StudySettings]:
    """Create the study or join it; its stored settings win over defaults and must match what was asked."""
    url = storage_url(cfg.study, cfg.out, cfg.storage)
    store = open_storage(url, cfg.heartbeat_s)
    sampler = optuna.samplers.TPESampler(constant_liar=True)  # workers do not all try the same point
    stored = None
    if cfg.study in optuna.get_all_study_names(store):
        attrs = optuna.load_study(study_name=cfg.study, storage=store).user_attrs
        # No settings yet: another worker has just created the study and is about to store the same.
        stored = StudySettings.model_validate(attrs[SETTINGS_ATTR]) if SETTINGS_ATTR in attrs else None
    settings = _requested_settings(cfg, stored)
    study = optuna.create_study(
        study_name=cfg.study,
        storage=store,
        direction=DIRECTIONS[settings.metric],
        sampler=sampler,
        pruner=_pruner(cfg),
        load_if_exists=True,
    )
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, settings.model_dump(mode="json"))
    return study, settings


def _on_epoch(trial: optuna.Trial, metric: str) -> Callable[[int, dict[str, float]], None]:
    def report(epoch: int, val: dict[str, float]) -> None:
        value = val[metric]
        trial.report(value, epoch)
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"diverged: validation {metric} is {value}")
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: validation {metric} {value:.4g}")

    return report


def _is_surplus(trial: optuna.Trial, trials: int) -> bool:
    """Whether enough lower-numbered trials have finished or are running to fill the study."""
    ahead = trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    return sum(t.number < trial.number for t in ahead) >= trials


def _objective(cfg: TuneConfig, settings: StudySettings, trial: optuna.Trial, on_step: Callable[[StepUpdate], None] | None) -> float:
    if _is_surplus(trial, cfg.trials):
        trial.set_user_attr("note", "another worker took the last trial")
        raise StudyFull
    train_cfg = trial_config(settings.space.sample(trial), settings.metric)
    trial.set_user_attr("config", train_cfg.model_dump(mode="json"))
    trial.set_user_attr("worker", f"{socket.gethostname()}/{os.getpid()}")
    trial_dir = storage.join(out_dir(cfg.study, cfg.out), "trials", f"{trial.number:04d}")
    try:
        result = train(cfg.manifest, trial_dir, train_cfg, on_epoch=_on_epoch(trial, settings.metric), on_step=on_step)
    except TrainingDiverged as exc:
        raise optuna.TrialPruned(f"diverged: {exc}") from exc
    trial.set_user_attr("best_epoch", result.best_epoch)
    trial.set_user_attr("model", result.out_dir)
    return result.best_val[settings.metric]  # finite: every epoch's value passed _on_epoch


def _tally(study: optuna.Study) -> tuple[int, int]:
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return finished, running


@optuna_stable_apis()
def tune(
    cfg: TuneConfig, on_trial: Callable[[FrozenTrial], None] | None = None, on_step: Callable[[StepUpdate], None] | None = None
) -> optuna.Study:
    """Run trials until the study has `cfg.trials` finished ones; returns the study. `on_trial` hears of each
    finished trial, `on_step` of each training step within one.

    When the remaining trials are all running elsewhere this worker waits: if one of them dies, its
    heartbeat stops and this worker fails it and runs a replacement.
    """
    study, settings = open_study(cfg)
    callbacks = [lambda _study, trial: on_trial(trial)] if on_trial else []
    while True:
        fail_stale_trials(study)
        finished, running = _tally(study)
        if finished >= cfg.trials:
            return study
        if finished + running >= cfg.trials:
            time.sleep(min(IDLE_POLL_S, cfg.heartbeat_s))
            continue
        study.optimize(
            lambda trial: _objective(cfg, settings, trial, on_step),
            n_trials=1,
            catch=(StudyFull,),
            callbacks=callbacks,
            gc_after_trial=True,
        )
