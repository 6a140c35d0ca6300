"""`bintally data ...` from the command line, on the real sample."""

from __future__ import annotations

import json
import re

from PIL import Image
from typer.testing import CliRunner

from bintally.cli import app
from bintally.data.abid import IMAGES_DIR, AbidRoot
from bintally.data.images import Enhance, decode_image, enhance
from bintally.data.subset import Subset, select_bins

runner = CliRunner()


def _rows(output: str) -> dict[int, int]:
    """count -> bins, read back from the printed table."""
    return {int(c): int(n.replace(",", "")) for c, n in re.findall(r"│\s+(\d+) │\s+([\d,]+) │", output)}


def test_stats_on_the_capstone_subset_reports_the_known_counts(abid_root, tmp_path):
    plot = tmp_path / "counts.png"
    result = runner.invoke(app, ["data", "stats", str(abid_root), "--subset", str(abid_root / "file_list.json"), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert _rows(result.output) == {1: 649, 2: 1235, 3: 1472, 4: 1289, 5: 984}
    assert "not_in_source: 4,812" in result.output
    assert Image.open(plot).size[0] > 300


def test_manifest_then_stats_on_the_manifest(abid_root, tmp_path):
    """Without a terminal (as under nohup or CI) the manifest build also prints progress lines: photos inspected of total."""
    out = tmp_path / "m.parquet"
    made = runner.invoke(
        app,
        ["data", "manifest", str(abid_root), "--counts", "1-5", "--per-count", "10", "--out", str(out), "--seed", "3"],
        env={"BINTALLY_PROGRESS_EVERY_S": "0"},
    )
    assert made.exit_code == 0, made.output
    assert "inspecting photos: 50/50 (" in made.output
    report = json.loads((tmp_path / "m.report.json").read_text())
    assert report["kept"] == 50 and report["skipped"] == 0
    shown = runner.invoke(app, ["data", "stats", str(out)])
    assert shown.exit_code == 0 and _rows(shown.output) == dict.fromkeys(range(1, 6), 10)


def test_preview_writes_originals_above_their_unsharp_masks(abid_root, tmp_path):
    """Three bins: each top tile is the photo, each bottom tile exactly its UnsharpMask (default settings),
    thumbnailed the same way; pixel for pixel (PNG is lossless)."""
    out = tmp_path / "preview.png"
    result = runner.invoke(app, ["data", "preview", str(abid_root), "--enhance", "unsharp", "--out", str(out), "-n", "3"])
    assert result.exit_code == 0, result.output
    sheet = Image.open(out).convert("RGB")
    assert sheet.size == (3 * 256, 2 * 256)
    root = AbidRoot(str(abid_root))
    for col, record in enumerate(select_bins(root, Subset(limit=3)).records):
        original = decode_image(root.read(IMAGES_DIR, record.id))
        for row, want in enumerate((original, enhance(original, Enhance()))):
            want = want.copy()
            want.thumbnail((256, 256))
            got = sheet.crop((col * 256, row * 256, col * 256 + want.width, row * 256 + want.height))
            assert got.tobytes() == want.tobytes(), (record.id, row)
        assert enhance(original, Enhance()).tobytes() != original.tobytes()


def test_bad_arguments_are_usage_errors_not_tracebacks(abid_root, tmp_path):
    for args in (["--counts", "5-1"], ["--split", "80/20"]):
        result = runner.invoke(app, ["data", "manifest", str(abid_root), "--out", str(tmp_path / "x.parquet"), *args])
        assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_root_with_no_bins_is_an_error_not_an_empty_manifest(abid_root, tmp_path):
    """Tried: `data manifest` and `data stats` on a mistyped root and on an existing folder without the ABID layout,
    and `data stats` on a manifest that is not there. Must hold: exit 1 with one line naming the root and the layout
    it lacks (or the missing file), no traceback; no manifest written (a manifest of 0 rows used to be written,
    and training failed later on it with a message about count classes)."""
    for root in (tmp_path / "no-such-root", tmp_path):
        out = tmp_path / "x.parquet"
        made = runner.invoke(app, ["data", "manifest", str(root), "--out", str(out)])
        assert made.exit_code == 1 and "no ABID bins at" in made.output and "bin-images/*.jpg" in made.output, made.output
        assert "Traceback" not in made.output and not out.exists()
        shown = runner.invoke(app, ["data", "stats", str(root)])
        assert shown.exit_code == 1 and "no ABID bins at" in shown.output
    missing = runner.invoke(app, ["data", "stats", str(tmp_path / "gone.parquet")])
    assert missing.exit_code == 1 and "gone.parquet" in missing.output and "Traceback" not in missing.output
