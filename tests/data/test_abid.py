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
