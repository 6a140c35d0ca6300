"""The paired accuracy difference against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bintally.accuracy import paired_accuracy_difference


def test_paired_difference_interval_by_hand():
    """Tried: 100 photos, b right where a is wrong on 10 and wrong where a is right on 4. Must hold: difference
    +0.06; per-photo differences have variance (14 - 100 * 0.06**2) / 99, so the 95% half-width is
    1.96 * sqrt(that / 100) = 0.0727..."""
    a = np.array([1] * 4 + [0] * 10 + [1] * 40 + [0] * 46, dtype=bool)
    b = np.array([0] * 4 + [1] * 10 + [1] * 40 + [0] * 46, dtype=bool)
    difference, low, high = paired_accuracy_difference(a, b)
    half = 1.959964 * math.sqrt((14 - 100 * 0.06**2) / 99 / 100)
    assert difference == pytest.approx(0.06)
    assert (low, high) == (pytest.approx(0.06 - half), pytest.approx(0.06 + half))


def test_paired_difference_of_identical_answers_is_exactly_zero_and_one_photo_says_nothing():
    """Tried: two graphs right on the same photos; then a single photo. Must hold: a zero-width interval at 0 when
    they never differ (however many photos), and the whole range [-1, 1] from one photo."""
    same = np.array([True, False, True, True])
    assert paired_accuracy_difference(same, same) == (0.0, 0.0, 0.0)
    assert paired_accuracy_difference(np.array([True]), np.array([False])) == (-1.0, -1.0, 1.0)
