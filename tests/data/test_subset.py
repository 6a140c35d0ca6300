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


def test_a_quota_on_one_split_keeps_every_bin_of_the_others(root):
    """The quickstart's sample: at most 5 training bins per count class (counts of 10 or more share one quota), and
    every validation and test bin. Must hold: the training bins meet the quotas, the other splits are whole; without
    a split for each bin the option is refused rather than applied to every split."""
    from bintally.data.manifest import SplitRatios, assign_split

    def split_of(bin_id: str) -> str:
        return assign_split(bin_id, 0, SplitRatios())

    everything = select_bins(root, Subset()).records
    chosen = select_bins(root, Subset(per_count=5, top_count=10, per_count_split="train"), split_of).records
    train = Counter(min(r.count, 10) for r in chosen if split_of(r.id) == "train")
    assert train == dict.fromkeys(range(11), 5)
    for split in ("val", "test"):
        assert {r.id for r in chosen if split_of(r.id) == split} == {r.id for r in everything if split_of(r.id) == split}
    with pytest.raises(ValueError, match="split_of"):
        select_bins(root, Subset(per_count=5, per_count_split="train"))
    with pytest.raises(ValueError, match="give per_count too"):
        Subset(per_count_split="train")


def test_a_held_out_limit_bounds_the_other_splits_and_not_the_quota(root):
    """Tried: the quickstart's sample with at most 3 validation and 3 test bins. Must hold: each of those splits
    keeps the 3 bins whose ids hash lowest (not its lowest ids, ABID's oldest photos), the training quotas are as
    without the limit; the limit alone is refused."""
    import hashlib

    from bintally.data.manifest import SplitRatios, assign_split

    def split_of(bin_id: str) -> str:
        return assign_split(bin_id, 0, SplitRatios())

    whole = select_bins(root, Subset(per_count=5, top_count=10, per_count_split="train"), split_of).records
    bounded = select_bins(root, Subset(per_count=5, top_count=10, per_count_split="train", held_out_limit=3), split_of).records
    for split in ("val", "test"):
        ids = [r.id for r in whole if split_of(r.id) == split]
        lowest = sorted(ids, key=lambda i: hashlib.sha256(i.encode()).digest())[:3]
        assert [r.id for r in bounded if split_of(r.id) == split] == [i for i in ids if i in lowest] != ids[:3]
    assert [r.id for r in bounded if split_of(r.id) == "train"] == [r.id for r in whole if split_of(r.id) == "train"]
    with pytest.raises(ValueError, match="give per_count_split too"):
        Subset(per_count=5, held_out_limit=3)
