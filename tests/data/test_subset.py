"""Subset selection: file lists, count ranges, per-count caps and limits pick the right real bins."""

from __future__ import annotations

from collections import Counter

import pytest

from bintally.data.abid import AbidRoot
from bintally.data.subset import Subset, parse_counts, select_bins


@pytest.fixture(scope="module")
def root(abid_root) -> AbidRoot:
    return AbidRoot(str(abid_root))


def test_capstone_file_list_gives_the_known_distribution(root, abid_root):
    """The capstone list names 10,441 bins; the 5,629 present have the documented counts, the rest are reported."""
    selection = select_bins(root, Subset(file_list=str(abid_root / "file_list.json")))
    assert Counter(r.count for r in selection.records) == {1: 649, 2: 1235, 3: 1472, 4: 1289, 5: 984}
    assert selection.problem_counts() == {"not_in_source": 10_441 - 5_629}


def test_counts_per_count_and_limit(root):
    both = select_bins(root, Subset(counts=(2, 3), per_count=5))
    assert Counter(r.count for r in both.records) == {2: 5, 3: 5}
    assert len(select_bins(root, Subset(counts=(0, 0))).records) == 157
    limited = select_bins(root, Subset(counts=(1, 5), limit=7)).records
    assert len(limited) == 7 and [r.id for r in limited] == sorted(r.id for r in limited)


def test_whole_sample_has_no_problems(root):
    selection = select_bins(root, Subset())
    assert len(selection.records) == 8_471 and selection.problems == []


@pytest.mark.parametrize("text, bounds", [("1-5", (1, 5)), ("3", (3, 3)), (None, None)])
def test_parse_counts(text, bounds):
    assert parse_counts(text) == bounds


@pytest.mark.parametrize("text", ["5-1", "a-b", "-3"])
def test_parse_counts_rejects(text):
    with pytest.raises(ValueError):
        parse_counts(text)
