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


def test_photos_no_folder_tells_apart_are_named_by_their_uri():
    """a.jpg beside a.png, the same path with and without file://, and two URLs differing only in their query: no
    folder separates them. Must hold: each such photo's id is its uri, every id is distinct, and an absolute path's
    root is no folder of an id (no id starts with "/")."""
    uris = ["/d/a.jpg", "/d/a.png", "file:///d/b.jpg", "/d/b.jpg", "s3://k/c.jpg?v=1", "s3://k/c.jpg?v=2", "/d/e.jpg", "/x/d/e.jpg"]
    ids = photo_ids(uris)
    assert len(set(ids.values())) == len(uris)
    assert all(ids[u] == u for u in uris[:6])
    assert ids["/d/e.jpg"] == "d/e" and ids["/x/d/e.jpg"] == "x/d/e"
