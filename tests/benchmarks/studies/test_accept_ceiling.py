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


def test_each_bound_gets_the_most_records_its_error_allows_by_hand():
    # Tried: 260 bins of 1 item in three tiers, the model's P(1) / P(2): 100 bins at 0.9 / 0.1, 100 at 0.6 / 0.4,
    # 60 at 0.3 / 0.7 (the third reads a 2). Records: right (0.8) or 2, 0, 3, 4 (0.06, 0.06, 0.06, 0.02). Lowering
    # the threshold accepts in turn: the first tier's right records (0% wrong), the third tier's records of 2
    # (wrong), the second tier's right ones (2.2% wrong), its records of 2 (5.7%), the third tier's right ones (4.4%),
    # the first tier's records of 2 (7.0%). Must hold: at most 2% wrong takes the first step only, 3% the third, 5%
    # the fifth.
    errors = RecordErrors()
    right, two = errors.recorded(1, CLASSES)[1], errors.recorded(1, CLASSES)[2]
    tiers = [(100, 0.9, 0.1), (100, 0.6, 0.4), (60, 0.3, 0.7)]
    probabilities = np.zeros((260, len(CLASSES.values)))
    probabilities[:, 1] = np.concatenate([np.full(n, p1) for n, p1, _ in tiers])
    probabilities[:, 2] = np.concatenate([np.full(n, p2) for n, _, p2 in tiers])
    (a, _, _), (b, _, _), (c, _, _) = tiers
    third = ((a + b) * right + c * two) / 260
    fifth = ((a + b + c) * right + (b + c) * two) / 260
    assert 0.02 < c * two / (260 * third) <= 0.03 and (b + c) * two / (260 * fifth) <= 0.05  # the steps are as said
    shares = ceilings(probabilities, np.ones(260, int), CLASSES, errors)["accepted_at_most_wrong"]
    assert shares["2%"] == pytest.approx(a * right / 260) and shares["3%"] == pytest.approx(third) and shares["5%"] == pytest.approx(fifth)


def test_the_studies_comparing_models_read_the_same_arguments():
    # Tried: a manifest, two models and a split, as accept_ceiling.py and ensemble.py take them. Must hold: each
    # model kept in order, the split as given, the device auto unless given.
    from _benchmarks import models_on_a_split

    args = models_on_a_split("a study").parse_args(["m.parquet", "runs/a", "runs/b", "--split", "test"])
    assert (args.manifest, args.models, args.split, args.device) == ("m.parquet", ["runs/a", "runs/b"], "test", "auto")
