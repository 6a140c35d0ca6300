"""ABID metadata and subset lists: labels come out right, bad records say why."""

from __future__ import annotations

import json

import pytest

from bintally.data.abid import BadRecord, parse_metadata, read_file_list, read_ids_file


def test_real_metadata_keeps_label_and_items(abid_root):
    record = parse_metadata("00585", (abid_root / "metadata" / "00585.json").read_bytes())
    raw = json.loads((abid_root / "metadata" / "00585.json").read_text())
    assert record.count == raw["EXPECTED_QUANTITY"]
    assert {i.asin for i in record.items} == set(raw["BIN_FCSKU_DATA"])
    assert sum(i.quantity for i in record.items) == record.count
    assert all(i.weight_lb is not None and i.length_in is not None for i in record.items)


def test_summed_volume_and_weight_skip_items_without_them():
    """Tried: one item with every measurement, one without dimensions, one without weight, and a bin with no
    items. Must hold: each sum covers the items that have it (quantity times), None where none has."""
    raw = {
        "EXPECTED_QUANTITY": 4,
        "BIN_FCSKU_DATA": {
            "A": {"quantity": 2, "length": {"value": 2.0}, "width": {"value": 3.0}, "height": {"value": 4.0}, "weight": {"value": 1.5}},
            "B": {"quantity": 1, "weight": {"value": 0.5}},
            "C": {"quantity": 1, "length": {"value": 1.0}, "width": {"value": 1.0}, "height": {"value": 1.0}},
        },
    }
    record = parse_metadata("x", json.dumps(raw).encode())
    assert record.items_volume() == 2 * 24.0 + 1.0
    assert record.items_weight() == 2 * 1.5 + 0.5
    empty = parse_metadata("y", b'{"EXPECTED_QUANTITY": 0}')
    assert empty.items_volume() is None and empty.items_weight() is None


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "no EXPECTED_QUANTITY"),
        ('{"BIN_FCSKU_DATA": {}}', "no EXPECTED_QUANTITY"),
        ('{"EXPECTED_QUANTITY": "3"}', "not an integer"),
        ('{"EXPECTED_QUANTITY": 2.5}', "not an integer"),
        ('{"EXPECTED_QUANTITY": true}', "not an integer"),
        ('{"EXPECTED_QUANTITY": -1}', "negative"),
    ],
)
def test_bad_metadata_raises_with_reason(raw, reason):
    with pytest.raises(BadRecord, match=reason):
        parse_metadata("x", raw.encode())


def test_file_list_maps_ids_to_counts(abid_root):
    ids = read_file_list(str(abid_root / "file_list.json"))
    assert len(ids) == 10_441
    assert ids["100313"] == 1  # first entry of the "1" list, an unpadded 6-digit id
    assert set(ids.values()) == {1, 2, 3, 4, 5}


def test_ids_file_accepts_ids_paths_and_json(tmp_path):
    (tmp_path / "ids.txt").write_text("00585\nmetadata/00588.json\nbin-images/1.jpg\n")
    (tmp_path / "ids.json").write_text('["00585", "100"]')
    assert read_ids_file(str(tmp_path / "ids.txt")) == ["00585", "00588", "1"]
    assert read_ids_file(str(tmp_path / "ids.json")) == ["00585", "100"]


def test_file_list_that_is_not_json_is_a_clear_error(tmp_path):
    (tmp_path / "list.json").write_text("nope")
    with pytest.raises(ValueError, match="not a JSON file list"):
        read_file_list(str(tmp_path / "list.json"))
