"""benchmarks/studies/accept_ceiling.py's ceilings, on made-up probabilities whose answers are known."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bintally.counts import CountClasses
from bintally.reconcile.policy import RecordErrors

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks" / "studies"))
from accept_ceiling import ceilings

CLASSES = CountClasses(values=list(range(11)), open_top=True)


def test_a_model_that_knows_accepts_every_correct_record_and_one_that_guesses_none():
    # Tried: 300 bins of counts 0-12, records 20% wrong. A model sure of each bin's count, and one that spreads its
    # probability evenly. Must hold: the sure one is exact on every bin and accepts the 80% of records that are
    # right (records of 10+ excepted: never accepted) within every bound; the even one accepts nothing, since
    # accepting all its records is 20% wrong.
    truth = np.random.default_rng(0).integers(0, 13, 300)
    sure = np.eye(len(CLASSES.values))[CLASSES.index(CLASSES.clip(truth))]
    knows = ceilings(sure, truth, CLASSES, RecordErrors())
    exact_records = 0.8 * np.mean(truth < 10)
    assert knows["accuracy"] == 1.0
    assert all(share == pytest.approx(exact_records, abs=0.02) for share in knows["accepted_at_most_wrong"].values())
    even = ceilings(np.full_like(sure, 1 / len(CLASSES.values)), truth, CLASSES, RecordErrors())
    assert set(even["accepted_at_most_wrong"].values()) == {0.0}
