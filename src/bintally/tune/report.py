"""What a study found, read from its storage alone: best trial, trials table, best config, plots."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import matplotlib.pyplot as plt
import optuna
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots
from pydantic import BaseModel

from bintally import storage
from bintally.tune import optuna_stable_apis
from bintally.tune.study import StudySettings, study_settings


class TrialRow(BaseModel):
    number: int
    state: str  # complete, pruned, fail, running, waiting
    value: float | None
    params: dict[str, Any]
    epochs: int  # epochs that reported a validation metric
    seconds: float | None
    worker: str | None = None  # host/pid that ran it
    note: str | None = None


class TuneSummary(BaseModel):
    study: str
    settings: StudySettings
    direction: str
    states: dict[str, int]
    best: TrialRow | None
    best_config: dict[str, Any] | None  # the best trial's TrainConfig (`best_config`)
    trials: list[TrialRow]


def trial_row(trial: FrozenTrial) -> TrialRow:
    return TrialRow(
        number=trial.number,
        state=trial.state.name.lower(),
        value=trial.value,
        params=trial.params,
        epochs=len(trial.intermediate_values),
        seconds=trial.duration.total_seconds() if trial.duration else None,
        worker=trial.user_attrs.get("worker"),
        note=_note(trial),
    )


@optuna_stable_apis()
def _note(trial: FrozenTrial) -> str | None:
    retried = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return trial.user_attrs.get("note") or (f"retry of trial {retried}" if retried is not None else None)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None while there is none."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def best_config(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's TrainConfig to train a real model with: without the sample of training photos that made the
    search's trials cheap (`limit_train`, as in the cpu-screen space), so the model learns from all of them."""
    return {**trial.user_attrs["config"], "limit_train": None}


def summarise(study: optuna.Study) -> TuneSummary:
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    return TuneSummary(
        study=study.study_name,
        settings=study_settings(study),
        direction=study.direction.name.lower(),
        states=dict(Counter(t.state.name.lower() for t in trials)),
        best=trial_row(best) if best else None,
        best_config=best_config(best) if best else None,
        trials=[trial_row(t) for t in trials],
    )


def _png(ax: Any) -> bytes:
    fig = ax.figure
    fig.set_size_inches(8, 5)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


@optuna_stable_apis()
def plots(study: optuna.Study) -> dict[str, bytes]:
    """PNG files by name: history always; learning curves once epochs were reported; importance once
    two complete trials differ in a parameter."""
    out = {"history.png": _png(optuna_plots.plot_optimization_history(study))}
    trials = study.get_trials(deepcopy=False)
    if any(t.intermediate_values for t in trials):
        out["learning_curves.png"] = _png(optuna_plots.plot_intermediate_values(study))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(complete) >= 2 and any(len({repr(t.params.get(p)) for t in complete}) > 1 for p in complete[0].params):
        out["importance.png"] = _png(optuna_plots.plot_param_importances(study))
    return out


def write_report(study: optuna.Study, out: str) -> tuple[TuneSummary, list[str]]:
    """Write summary.json, best_config.yaml (once a trial completed) and the plots into `out`."""
    summary = summarise(study)
    files = {"summary.json": summary.model_dump_json(indent=2).encode(), **plots(study)}
    if summary.best_config is not None:
        files["best_config.yaml"] = yaml.safe_dump(summary.best_config, sort_keys=False).encode()
    written = []
    for name, data in files.items():
        url = storage.join(out, name)
        storage.write_bytes(url, data)
        written.append(url)
    return summary, written
