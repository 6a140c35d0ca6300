"""Studies on SQLite and PostgreSQL: trials finish, resume after SIGKILL, workers share a study, pruning prunes."""

from __future__ import annotations

import signal
import time
import uuid

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from bintally.tune.study import (
    TuneConfig,
    TuneError,
    load_study,
    open_storage,
    open_study,
    tune,
)


def _states(study: optuna.Study) -> dict[int, TrialState]:
    return {t.number: t.state for t in study.get_trials(deepcopy=False)}


def test_sqlite_study_finishes_with_the_requested_trials(sqlite_run):
    """`bintally tune M --trials 4` with the default SQLite storage: 4 complete trials, each with its own
    sampled lr and its config trained on 'train' and judged on 'val', and the live lines were printed."""
    study = load_study(f"sqlite:///{sqlite_run / 'study.db'}", "sq")
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({t.params["lr"] for t in trials}) == 4
    for t in trials:
        assert (t.user_attrs["config"]["train_splits"], t.user_attrs["config"]["val_split"]) == (["train"], "val")
        assert len(t.intermediate_values) == 2  # one validation report per epoch
    log = (sqlite_run / "cli.log").read_text()
    assert all(f"trial   {n}  complete" in log for n in range(4))


def test_tuning_never_touches_the_test_split(sqlite_run):
    """Every trial's model carries no test metrics: only the final model was evaluated, on test, once."""
    trial_specs = sorted((sqlite_run / "trials").glob("*/model.json"))
    assert len(trial_specs) == 4
    assert all('"metrics": {}' in spec.read_text() for spec in trial_specs)


def test_kill_mid_trial_then_resume(tmp_path, small_manifest, tiny_space, tuner):
    """SIGKILL the tuner after a 4-epoch trial finished its first epoch, run the same command again: the study
    ends with 2 complete trials, the killed trial FAILED (its heartbeat stopped) and its parameters tried again."""
    space = tmp_path / "four-epochs.yaml"
    space.write_text(tiny_space.read_text().replace("epochs: 2", "epochs: 4"))
    out = tmp_path / "run"
    args = (small_manifest, space, out, "--trials", "2", "--study", "k", "--pruner", "none", "--heartbeat", "1")
    first = tuner(*args)
    killed = _wait_for_first_epoch(out, first)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    tuner(*args).wait_ok()

    study = load_study(f"sqlite:///{out / 'study.db'}", "k")
    states = _states(study)
    assert states[killed] == TrialState.FAIL
    assert sum(s == TrialState.COMPLETE for s in states.values()) == 2
    retries = [t for t in study.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed]
    assert len(retries) == 1 and retries[0].params == study.trials[killed].params


def _wait_for_first_epoch(out, running, timeout=180) -> int:
    """The number of the first trial whose training wrote its first epoch (its history file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert running.proc.poll() is None, (running.out / "tune.log").read_text()
        done = sorted((out / "trials").glob("*/history.json"))
        if done:
            return int(done[0].parent.name)
        time.sleep(0.1)
    raise AssertionError("no trial finished an epoch in time")


def test_two_workers_share_a_postgresql_study(tmp_path, small_manifest, tiny_space, tuner, postgres_url):
    """Two tuner processes join one PostgreSQL study (as two machines would): 4 complete trials in total,
    distinct trial numbers, each worker ran some, and any other trial is a worker standing down."""
    name = f"pg-{uuid.uuid4().hex[:8]}"
    common = ("--trials", "4", "--study", name, "--storage", postgres_url, "--pruner", "none")
    store = open_storage(postgres_url)
    try:
        workers = [tuner(small_manifest, tiny_space, tmp_path / f"machine{i}", *common) for i in range(2)]
        for w in workers:
            w.wait_ok()
        trials = optuna.load_study(study_name=name, storage=store).get_trials(deepcopy=False)
    finally:
        if name in optuna.get_all_study_names(store):
            optuna.delete_study(study_name=name, storage=store)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    assert len({t.number for t in trials}) == len(trials)
    assert {t.user_attrs["worker"].rsplit("/", 1)[1] for t in complete} == {str(w.proc.pid) for w in workers}
    others = [t for t in trials if t.state != TrialState.COMPLETE]
    assert all(t.user_attrs.get("note") == "another worker took the last trial" for t in others)


@pytest.mark.parametrize("pruner, normal", [("median", 1), ("hyperband", 2)])
def test_a_clearly_bad_trial_is_pruned(tmp_path, small_manifest, tiny_space, pruner, normal):
    """After normal trials (Hyperband needs two to rank against), a trial enqueued with lr=10 (validation loss in
    the thousands) is PRUNED, and the median pruner stops it after its first epoch."""
    cfg = TuneConfig(
        manifest=str(small_manifest),
        trials=normal,
        study="p",
        out=str(tmp_path),
        space=str(tiny_space),
        metric="loss",
        pruner=pruner,
        startup_trials=1,
    )
    tune(cfg)
    study, _ = open_study(cfg)
    study.enqueue_trial({"lr": 10.0})
    study = tune(cfg.model_copy(update={"trials": normal + 1}))
    bad = study.trials[normal]
    assert bad.params["lr"] == 10.0 and bad.state == TrialState.PRUNED
    if pruner == "median":
        assert list(bad.intermediate_values) == [0]


def test_a_study_keeps_its_settings(tmp_path, small_manifest, tiny_space):
    """Joining a study with another metric or space is refused with the reason, before any trial runs."""
    cfg = TuneConfig(manifest=str(small_manifest), trials=1, study="s", out=str(tmp_path), space=str(tiny_space))
    open_study(cfg)
    with pytest.raises(TuneError, match="different metric"):
        open_study(cfg.model_copy(update={"metric": "rmse"}))
    with pytest.raises(TuneError, match="different space"):
        open_study(cfg.model_copy(update={"space": "original"}))
    study, settings = open_study(cfg.model_copy(update={"space": None}))  # resume without --space: the study's own
    assert settings.space.fixed["image_size"] == 64 and not study.trials


def test_report_of_a_missing_study_names_what_is_there(sqlite_run):
    """--show on a storage without the study: an error listing the studies it has."""
    with pytest.raises(TuneError, match="it has: sq"):
        load_study(f"sqlite:///{sqlite_run / 'study.db'}", "nope")
    with pytest.raises(TuneError, match="no SQLite study database"):
        load_study(f"sqlite:///{sqlite_run / 'missing.db'}", "sq")
