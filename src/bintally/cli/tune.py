"""`bintally tune ...`: hyperparameter search on Optuna, its report, and the final model."""

from __future__ import annotations

from typing import Annotated, get_args

import optuna
import typer
from optuna.trial import FrozenTrial
from rich.table import Table

from bintally.cli.app import app, console, reported_errors
from bintally.cli.train import step_progress
from bintally.tune.final import FinalModel, retrain_best
from bintally.tune.report import TrialRow, TuneSummary, trial_row, write_report
from bintally.tune.space import PACKAGED
from bintally.tune.study import (
    DIRECTIONS,
    Pruner,
    TuneConfig,
    load_study,
    out_dir,
    shown_url,
    storage_url,
    tune,
)

TUNE = TuneConfig.model_fields  # the options' defaults are the config's
STATE_STYLE = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan", "waiting": "dim"}


def _value(row: TrialRow) -> str:
    return "-" if row.value is None else f"{row.value:.4f}"


def _params(row: TrialRow) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.params.items())


def _print_trial(trial: FrozenTrial) -> None:
    row = trial_row(trial)
    style = STATE_STYLE.get(row.state, "")
    seconds = f"{row.seconds:.1f}s" if row.seconds is not None else "-"
    note = f"  ({row.note})" if row.note else ""
    console.print(f"trial {row.number:>3}  [{style}]{row.state:<8}[/]  {_value(row):>8}  {seconds:>8}  {_params(row)}{note}")


def _print_summary(summary: TuneSummary) -> None:
    table = Table(title=f"study {summary.study}: validation {summary.settings.metric} ({summary.direction})")
    for column in ("#", "state", "value", "epochs", "seconds", "params", "note"):
        table.add_column(column, justify="right" if column in ("#", "value", "epochs", "seconds") else "left")
    for row in summary.trials:
        seconds = f"{row.seconds:.0f}" if row.seconds is not None else "-"
        state = f"[{STATE_STYLE.get(row.state, '')}]{row.state}[/]"
        table.add_row(str(row.number), state, _value(row), str(row.epochs), seconds, _params(row), row.note or "")
    console.print(table)
    console.print(", ".join(f"{n} {state}" for state, n in summary.states.items()))
    if summary.best is None:
        console.print("no complete trial yet")
        return
    console.print(f"best: trial {summary.best.number}, validation {summary.settings.metric} {_value(summary.best)}")
    console.print(f"  {_params(summary.best)}")


def _print_final(final: FinalModel) -> None:
    test = final.test
    console.print(
        f"final model {final.model} (trial {final.trial}, {final.config.epochs} epochs on train+val): "
        f"test accuracy {test['accuracy']:.1%}, within one {test['within_one']:.1%}, RMSE {test['rmse']:.3f}"
    )
    console.print(f"wrote {', '.join(final.report)}")


@app.command("tune")
def tune_cmd(
    manifest: Annotated[str | None, typer.Argument(help="manifest .parquet (not needed with --show alone)")] = None,
    trials: Annotated[int | None, typer.Option("--trials", min=1, help="finished trials the study should have")] = None,
    storage: Annotated[str | None, typer.Option(help="sqlite:///FILE or postgresql://USER:PASS@HOST/DB [default: OUT/study.db]")] = None,
    study: Annotated[str, typer.Option(help="study name; workers with the same name and storage share it")] = TUNE["study"].default,
    space: Annotated[str | None, typer.Option(help=f"search space: a packaged one ({', '.join(PACKAGED)}) or a YAML file")] = None,
    metric: Annotated[str | None, typer.Option(help=f"validation metric: {', '.join(DIRECTIONS)}")] = None,
    pruner: Annotated[str, typer.Option(help="median, hyperband or none")] = TUNE["pruner"].default,
    startup_trials: Annotated[int, typer.Option(min=0, help="trials the median pruner lets finish first")] = TUNE["startup_trials"].default,
    warmup_epochs: Annotated[int, typer.Option(min=0, help="epochs of each trial the median pruner never judges")] = TUNE[
        "warmup_epochs"
    ].default,
    heartbeat: Annotated[int, typer.Option(min=1, help="seconds between a worker's heartbeats")] = TUNE["heartbeat_s"].default,
    out: Annotated[str | None, typer.Option(help="trial models and report [default: runs/tune-STUDY]")] = None,
    show: Annotated[bool, typer.Option("--show", help="print and write the report from the storage; no new trials")] = False,
    retrain: Annotated[bool, typer.Option("--retrain-best", help="train the best config on train+val, test once")] = False,
) -> None:
    """Search hyperparameters on the validation split; resume by running the same command again."""
    if not show and (manifest is None or trials is None):
        raise typer.BadParameter("tuning needs MANIFEST and --trials (or use --show)")
    if retrain and manifest is None:
        raise typer.BadParameter("--retrain-best needs MANIFEST")
    if pruner not in get_args(Pruner):
        raise typer.BadParameter(f"one of {', '.join(get_args(Pruner))}", param_hint="--pruner")
    directory = out_dir(study, out)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is printed here instead
    with reported_errors():
        url = storage_url(study, out, storage)
        if show:
            found = load_study(url, study)
        else:
            cfg = TuneConfig(
                manifest=manifest,
                trials=trials,
                study=study,
                out=out,
                storage=url,
                space=space,
                metric=metric,
                pruner=pruner,
                startup_trials=startup_trials,
                warmup_epochs=warmup_epochs,
                heartbeat_s=heartbeat,
            )
            console.print(f"study {study} in {shown_url(url)}")
            with step_progress() as on_step:
                found = tune(cfg, on_trial=_print_trial, on_step=on_step)
        summary, written = write_report(found, directory)
        _print_summary(summary)
        console.print(f"wrote {', '.join(written)}")
        if retrain and manifest is not None:  # checked above
            with console.status("training the final model on train+val"):
                final = retrain_best(found, manifest, directory)
            _print_final(final)
