"""The search space: YAML parsing, validation errors, and what a trial samples."""

from __future__ import annotations

import optuna
import pytest

from bintally.tune.space import SpaceError, load_space, parse_space, trial_config


def _trials(n: int) -> list[optuna.Trial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return [study.ask() for _ in range(n)]


@pytest.mark.parametrize("name", ["default", "original", "cpu-screen"])
def test_packaged_spaces_sample_valid_train_configs(name):
    """Each packaged space loads by name; 20 sampled trials each give a valid TrainConfig on train/val monitoring the metric."""
    space = load_space(name)
    for trial in _trials(20):
        cfg = trial_config(space.sample(trial), "rmse")
        assert (cfg.train_splits, cfg.val_split, cfg.monitor) == (["train"], "val", "rmse")


def test_original_space_is_the_original_jobs_ranges():
    """The original system's space: lr 5e-4..1e-3 log, batch 128/256, epochs 20/30, head-only."""
    space = load_space("original")
    assert (space.params["lr"].low, space.params["lr"].high, space.params["lr"].log) == (5e-4, 1e-3, True)
    assert space.params["batch_size"].choices == [128, 256]
    assert space.params["epochs"].choices == [20, 30]
    assert space.fixed["strategy"] == "head"


def test_conditional_params_follow_when():
    """`when` samples a parameter only for matching earlier values: sigma only with ordinal, smoothing only with classify."""
    space = parse_space(
        """
        params:
          head: {type: categorical, choices: [classify, ordinal]}
          ordinal_sigma: {type: float, low: 0.4, high: 1.2, when: {head: ordinal}}
          label_smoothing: {type: float, low: 0.0, high: 0.2, when: {head: [classify]}}
        """
    )
    heads = set()
    for trial in _trials(30):
        values = space.sample(trial)
        heads.add(values["head"])
        extra = {"ordinal": "ordinal_sigma", "classify": "label_smoothing"}
        assert set(values) == {"head", extra[values["head"]]}
    assert heads == {"classify", "ordinal"}


def test_fixed_values_reach_the_config():
    """Fixed fields are in every trial's config; sampled ones stay inside their range."""
    space = parse_space("fixed: {epochs: 3, image_size: 96}\nparams: {lr: {type: float, low: 0.001, high: 0.01, log: true}}")
    cfg = trial_config(space.sample(_trials(1)[0]), "accuracy")
    assert (cfg.epochs, cfg.image_size) == (3, 96)
    assert 0.001 <= cfg.lr <= 0.01


@pytest.mark.parametrize(
    "text, error",
    [
        ("params: {lrr: {type: float, low: 0.1, high: 1}}", "not TrainConfig fields: lrr"),
        ("fixed: {val_split: test}", "val_split: the tuner trains on 'train' and judges on 'val'"),
        ("fixed: {monitor: loss}", "monitor: the tuner"),
        ("fixed: {lr: 0.1}\nparams: {lr: {type: float, low: 0.1, high: 1}}", "both fixed and sampled: lr"),
        ("params: {lr: {type: float, low: 1, high: 0.1}}", "must be below high"),
        ("params: {lr: {type: float, low: 0, high: 0.1, log: true}}", "a log range needs low > 0"),
        ("params: {lr: {type: gaussian}}", "type"),
        ("params: {label_smoothing: {type: float, low: 0, high: 0.2, when: {head: classify}}}", "'when' refers to head"),
        ("fixed: {strategy: sideways}", "strategy"),
        ("params: {strategy: {type: categorical, choices: [full, sideways]}}", "strategy"),
        ("params: {augment_strength: {type: float, low: 0.5, high: 3}}", "augment_strength"),
        ("params: [lr", "space"),
    ],
)
def test_bad_spaces_are_refused_with_the_reason(text, error):
    """Typos, tuner-owned fields, inverted ranges, values TrainConfig refuses (fixed, a choice, a range end), dangling
    conditions and bad YAML: a SpaceError naming the problem, before any trial runs."""
    with pytest.raises(SpaceError, match=error):
        parse_space(text)


def test_a_missing_space_file_names_the_packaged_ones(tmp_path):
    """--space pointing at no file: a SpaceError listing the packaged spaces."""
    with pytest.raises(SpaceError, match="no such file .packaged spaces: default, original"):
        load_space(str(tmp_path / "nope.yaml"))
