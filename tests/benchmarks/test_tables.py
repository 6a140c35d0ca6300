"""benchmarks/tables.py: every table of measured numbers in README.md and docs/ is what the script writes today
from benchmarks/results/, so no number in the docs can drift from its result file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import tables


def test_every_table_in_the_docs_is_current():
    # Tried: render every marked table of README.md and docs/*.md from today's result files. Must hold: none
    # differs from the text between its markers (else: `python benchmarks/tables.py` rewrites them).
    assert tables.stale() == [], "stale tables; run `python benchmarks/tables.py`"


def test_the_docs_hold_tables_and_every_result_file_they_name_exists():
    # Must hold: the docs carry the generated tables (a marker lost in an edit is caught), and every result file a
    # table reads exists, except the quickstart's whole-range result, which a table waits for.
    marked = {m.group(2) for doc in tables.DOCS for m in tables.MARKER.finditer(doc.read_text())}
    assert {"headline", "whole-range", "decisions-whole-range", "learning-curve", "serving-xeon-amx"} <= marked
    assert marked <= set(tables.TABLES)
    for name, (_, files, _) in tables.TABLES.items():
        for f in files:
            if f != "quickstart-whole-range.json" and name in marked:
                assert list(tables.RESULTS.glob(f)), f"{name}: {f}"


def test_a_changed_result_makes_its_table_stale_and_a_rewrite_fixes_it(tmp_path, monkeypatch):
    # Tried: a doc with the predict-scale table, written; then the result file's number changed. Must hold: the
    # check names that table, and rewriting puts the new number in, with the file's machine and command under it.
    results = tmp_path / "results"
    results.mkdir()
    original = json.loads((tables.RESULTS / "predict-scale.json").read_text())
    (results / "predict-scale.json").write_text(json.dumps(original))
    monkeypatch.setattr(tables, "RESULTS", results)
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- table:predict-scale -->\n<!-- /table -->\nafter\n")
    doc.write_text(tables.rewrite(doc.read_text(), doc))
    assert tables.stale([doc]) == []
    assert original["hardware"] in doc.read_text() and original["command"] in doc.read_text()
    changed = original | {"rows": [original["rows"][0] | {"steady_photos_per_s": 999.0}]}
    (results / "predict-scale.json").write_text(json.dumps(changed))
    assert tables.stale([doc]) == ["doc.md: predict-scale"]
    doc.write_text(tables.rewrite(doc.read_text(), doc))
    assert "| one process | 4.0 | 999.0 | +0.00 |" in doc.read_text() and doc.read_text().endswith("<!-- /table -->\nafter\n")


def test_an_unknown_table_name_stops_with_the_doc_named(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    doc = tmp_path / "doc.md"
    with pytest.raises(SystemExit, match="doc.md: no table named 'nope'"):
        tables.rewrite("<!-- table:nope -->\n<!-- /table -->\n", doc)


def test_the_quickstart_table_waits_for_its_result_file(tmp_path, monkeypatch):
    # Tried: the quickstart's whole-range table without its result file, then with one shaped as evaluate writes
    # metrics by range. Must hold: first a line saying it is not measured yet, then the table by range beside the
    # trivial answer, with the wall time.
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    assert "Not measured yet" in tables.quickstart_whole_range(["quickstart-whole-range.json"])[0]
    whole = json.loads((Path(tables.__file__).parent / "results" / "evaluate-default-whole-range-test.json").read_text())
    (tmp_path / "quickstart-whole-range.json").write_text(json.dumps({"metrics": whole["metrics"], "wall_s": 333.0}))
    lines = tables.quickstart_whole_range(["quickstart-whole-range.json"])
    assert lines[0].startswith("| recorded count | bins | exact") and "| 10+ | 71 |" in "\n".join(lines)
    assert lines[-1] == "Wall time: 5 min 33 s."
