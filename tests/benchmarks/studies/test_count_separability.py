"""benchmarks/studies/count_separability.py's decision offsets, on made-up probabilities whose answers are known."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bintally.model.calibration import softmax

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks" / "studies"))
from count_separability import RULES, cross_validated, measured


def test_cross_validated_offsets_undo_a_prior_shift_but_cannot_split_counts_the_model_confuses():
    # Tried: 500 bins, 100 per count; the model sees each count clearly except that it shies away from 5 (its
    # score for 5 pushed down by 2.5), and counts 1 and 2 look the same to it. Must hold: plain argmax gets under
    # half the 5s right; the balanced-accuracy offsets, fitted on other folds only, win most of them back; 4 from 5
    # is near-perfect by the log-ratio the offsets move along, 1 from 2 a coin's (about 0.5), and no rule gets
    # both 1 and 2 right much more than half the time.
    rng = np.random.default_rng(0)
    counts = np.repeat([1, 2, 3, 4, 5], 100)
    targets = counts - 1
    scores = 3.0 * np.eye(5)[np.where(targets == 1, 0, targets)] + rng.normal(0.0, 1.0, (500, 5))
    scores[:, 4] -= 2.5
    result = measured(softmax(scores), counts)
    plain, balanced = result["rules"]["argmax"], result["rules"]["max balanced accuracy"]
    assert plain["per_count"]["5"] < 0.5 and balanced["per_count"]["5"] > 0.7
    assert result["neighbour_auc"]["4-5"] > 0.95 and result["neighbour_auc"]["1-2"] == pytest.approx(0.5, abs=0.15)
    for rule in result["rules"].values():
        assert rule["per_count"]["1"] + rule["per_count"]["2"] < 1.2
    assert result["offsets_on_all_bins"]["max balanced accuracy"][4] > 1.0


def test_offsets_are_never_scored_on_the_bins_they_were_fitted_to():
    # Tried: 300 bins of pure noise (log-probabilities unrelated to the counts). Must hold: offsets fitted on all
    # bins and scored on the same bins beat chance (0.2 balanced accuracy) by overfitting; cross-validated, they
    # stay at chance, well below the in-sample number.
    rng = np.random.default_rng(0)
    log_probabilities, counts = rng.normal(0.0, 1.0, (300, 5)), rng.integers(1, 6, 300)
    fit = RULES["max balanced accuracy"]
    in_sample = (log_probabilities + fit(log_probabilities, counts - 1)).argmax(axis=1)
    in_sample_balanced = np.mean([np.mean(in_sample[counts == c] == c - 1) for c in range(1, 6)])
    held_out_balanced = np.mean(list(cross_validated(log_probabilities, counts, fit)["per_count"].values()))
    assert held_out_balanced < 0.26 and in_sample_balanced - held_out_balanced > 0.02
