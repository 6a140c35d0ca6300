"""The count classes: the open top class, labels, clipping, and the ranges reports use."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bintally.counts import CountClasses, parse_classes


def test_an_open_top_class_holds_every_count_from_k_up():
    classes = CountClasses(values=list(range(11)), open_top=True)
    assert classes.labels[-2:] == ["9", "10+"]
    assert classes.clip([0, 9, 10, 14, 200]).tolist() == [0, 9, 10, 10, 10]
    assert classes.index([3, 25]).tolist() == [3, 10]
    assert classes.contains(250) and classes.is_open(12) and not classes.is_open(9)
    assert classes.contains(40) and not classes.contains(-1)


def test_closed_classes_know_only_their_counts():
    classes = CountClasses(values=[1, 2, 3, 4, 5])
    assert classes.labels == ["1", "2", "3", "4", "5"]
    assert not classes.contains(0) and not classes.contains(6) and not classes.is_open(5)
    assert classes.clip([7]).tolist() == [7]  # nothing is folded into a closed top
    assert not classes.contains(6)


def test_classes_from_training_counts():
    """Below K every count that occurs; K and above one open class. Without any count reaching K: closed, as before."""
    assert CountClasses.from_counts([0, 1, 3, 12, 40], top=10) == CountClasses(values=[0, 1, 3, 10], open_top=True)
    assert CountClasses.from_counts([1, 2, 3, 4, 5], top=10) == CountClasses(values=[1, 2, 3, 4, 5])
    assert CountClasses.from_counts([1, 2, 30], top=None) == CountClasses(values=[1, 2, 30])


def test_labels_read_back_into_the_same_classes():
    classes = CountClasses(values=[0, 1, 2, 8], open_top=True)
    assert CountClasses.from_labels(classes.labels) == classes
    assert CountClasses.from_labels(["1", "2", "3"]) == CountClasses(values=[1, 2, 3])


def test_a_low_open_top_is_not_one_of_the_small_counts():
    """K = 5: the open class 5+ is its own range, not part of 1-5 (a bin of 8 is not a small count)."""
    assert CountClasses.from_counts(range(12), top=5).ranges() == {"0": (0, 0), "1-4": (1, 4), "5+": (5, 5)}


def test_a_record_of_a_count_the_classes_skip_cannot_be_judged():
    """Classes 0, 2 and 10+ (no 1 or 3-9 in training): records of 1 or 3 have no class, 40 is 10+."""
    classes = CountClasses.from_counts([0, 2, 2, 10, 14], top=10)
    assert [classes.contains(r) for r in (1, 2, 3, 9, 10, 40)] == [False, True, False, False, True, True]
    assert classes.contains_each([1, 2, 3, 9, 10, 40]).tolist() == [False, True, False, False, True, True]
    assert classes.is_open_each([2, 9, 10, 40]).tolist() == [False, False, True, True]
    assert not CountClasses(values=[1, 2, 3]).is_open_each([3, 40]).any()


def test_ranges_are_those_the_classes_reach():
    assert CountClasses(values=list(range(11)), open_top=True).ranges() == {"0": (0, 0), "1-5": (1, 5), "6-9": (6, 9), "10+": (10, 10)}
    assert CountClasses(values=[1, 2, 3, 4, 5]).ranges() == {"1-5": (1, 5)}


@pytest.mark.parametrize("values", [[3], [2, 1], [1, 1, 2], [-1, 0]])
def test_bad_classes_are_refused(values):
    with pytest.raises(ValidationError):
        CountClasses(values=values)


def test_parse_classes():
    assert parse_classes("1-5") == [1, 2, 3, 4, 5]
    assert parse_classes("1,2,3,4,5") == [1, 2, 3, 4, 5]
    assert parse_classes("0,2-4") == [0, 2, 3, 4]
    with pytest.raises(ValueError):
        parse_classes("one-five")
