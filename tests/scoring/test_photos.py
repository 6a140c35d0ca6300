"""Which photos a job names, and each photo's id in its output."""

from __future__ import annotations

from bintally.scoring.photos import photo_ids


def test_an_id_is_the_bin_id_with_as_many_folders_as_make_it_unique():
    """Photos with the same file name in different folders (or buckets) are different bins to a warehouse. Must
    hold: a unique file name is its own id (ABID's bin id, as before); clashing ones take folders in front until
    they differ, each only as many as it needs; a uri named twice is one photo."""
    uris = [
        "/data/day1/00585.jpg",
        "/data/day2/00585.jpg",
        "s3://bucket/a/day1/00585.jpg",
        "/data/day1/00999.jpg",
        "/data/day1/00999.jpg",
        "s3://bucket/b/07000.png",
    ]
    assert photo_ids(uris) == {
        "/data/day1/00585.jpg": "data/day1/00585",
        "/data/day2/00585.jpg": "day2/00585",
        "s3://bucket/a/day1/00585.jpg": "a/day1/00585",
        "/data/day1/00999.jpg": "00999",
        "s3://bucket/b/07000.png": "07000",
    }
