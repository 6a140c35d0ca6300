"""benchmarks/count_separability.py's decision offsets, on made-up probabilities whose answers are known."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bintally.model.calibration import softmax

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from count_separability import measured


def test_cross_validated_offsets_undo_a_prior_shift_but_cannot_split_counts_the_model_confuses():
    # Tried: 500 bins, 100 per count; the model sees each count clearly except that it shies away from 5 (its
    # score for 5 pushed down by 2.5), and counts 1 and 2 look the same to it. Must hold: plain argmax gets few
    # 5s right; the balanced-accuracy offsets, fitted on other folds only, win most of them back; the AUC
    # between 1 and 2 is a coin's (about 0.5) and no rule gets both of them right much more than half the time.
    rng = np.random.default_rng(0)
    counts = np.repeat([1, 2, 3, 4, 5], 100)
    targets = counts - 1
    scores = 3.0 * np.eye(5)[np.where(targets == 1, 0, targets)] + rng.normal(0.0, 1.0, (500, 5))
    scores[:, 4] -= 2.5
    result = measured(softmax(scores), counts)
    plain, balanced = result["rules"]["argmax"], result["rules"]["max balanced accuracy"]
    assert plain["per_count"]["5"] < 0.35 and balanced["per_count"]["5"] > 0.7
    assert result["neighbour_auc"]["1-2"] == pytest.approx(0.5, abs=0.1) and result["neighbour_auc"]["2-3"] > 0.9
    for rule in result["rules"].values():
        assert rule["per_count"]["1"] + rule["per_count"]["2"] < 1.2
    assert result["offsets_on_all_bins"]["max balanced accuracy"][4] > 1.0
