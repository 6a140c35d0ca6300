"""What is in a dataset: count distribution, image sizes, skipped bins; plots and previews."""

from __future__ import annotations

import io
from collections import Counter

from PIL import Image
from pydantic import BaseModel

from bintally.data.abid import IMAGES_DIR, AbidRoot
from bintally.data.images import Enhance, ImageError, decode_image, enhance, image_size
from bintally.data.manifest import Manifest
from bintally.data.subset import Subset, select_bins


class DatasetStats(BaseModel):
    total: int
    counts: dict[int, int]
    sizes: dict[str, int]  # "WxH" -> number of images
    splits: dict[str, int] = {}
    skipped: dict[str, int] = {}


def _size_key(width: int, height: int) -> str:
    return f"{width}x{height}"


def manifest_stats(manifest: Manifest) -> DatasetStats:
    return DatasetStats(
        total=len(manifest.rows),
        counts=manifest.counts(),
        sizes=dict(Counter(_size_key(r.width, r.height) for r in manifest.rows).most_common()),
        splits=dict(sorted(Counter(r.split for r in manifest.rows).items())),
    )


def root_stats(root: AbidRoot, subset: Subset) -> DatasetStats:
    """Stats straight from an ABID root: labels from metadata, sizes from image headers."""
    selection = select_bins(root, subset)
    sizes: Counter[str] = Counter()
    skipped = selection.problem_counts()
    records = selection.records
    for start in range(0, len(records), 512):
        for data in root.read_many(IMAGES_DIR, [r.id for r in records[start : start + 512]]).values():
            try:
                if isinstance(data, Exception):
                    raise ImageError(str(data))
                sizes[_size_key(*image_size(data))] += 1
            except ImageError:
                sizes["unreadable"] += 1
    return DatasetStats(
        total=len(records),
        counts=dict(sorted(Counter(r.count for r in records).items())),
        sizes=dict(sizes.most_common()),
        skipped=skipped,
    )


def plot_counts(stats: DatasetStats, title: str = "Bins per count") -> bytes:
    """A bar chart of the count distribution, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    counts = list(stats.counts)
    bars = ax.bar([str(c) for c in counts], [stats.counts[c] for c in counts], color="#3b6ea8")
    ax.bar_label(bars, fontsize=8)
    ax.set_xlabel("objects in bin (EXPECTED_QUANTITY)")
    ax.set_ylabel("bins")
    ax.set_title(f"{title} (n = {stats.total:,})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def preview(root: AbidRoot, subset: Subset, cfg: Enhance, n: int = 4, tile: int = 256) -> bytes:
    """Originals (top row) beside their enhanced versions (bottom row), as PNG bytes."""
    records = select_bins(root, subset.model_copy(update={"limit": n})).records
    if not records:
        raise ValueError("no bins selected to preview")
    sheet = Image.new("RGB", (tile * len(records), tile * 2), "white")
    for col, record in enumerate(records):
        original = decode_image(root.read(IMAGES_DIR, record.id))
        for row, img in enumerate((original, enhance(original, cfg))):
            img = img.copy()
            img.thumbnail((tile, tile))
            sheet.paste(img, (col * tile, row * tile))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
