"""`bintally data ...`: fetch, manifest, shards, stats, preview."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bintally import storage
from bintally.cli.app import EndpointOpt, app, console, make_config, progress, reported_errors
from bintally.data.abid import AbidRoot
from bintally.data.fetch import fetch
from bintally.data.images import Enhance
from bintally.data.manifest import (
    SplitRatios,
    build_manifest,
    read_manifest,
    write_manifest,
)
from bintally.data.shards import ShardsConfig, write_shards
from bintally.data.stats import (
    DatasetStats,
    manifest_stats,
    plot_counts,
    preview,
    root_stats,
)
from bintally.data.subset import Subset, parse_counts

data_app = typer.Typer(help="Ingest and inspect the Amazon Bin Image Dataset.", no_args_is_help=True)
app.add_typer(data_app, name="data")

SubsetOpt = Annotated[str | None, typer.Option("--subset", help="capstone file_list.json (path or URL)")]
CountsOpt = Annotated[str | None, typer.Option("--counts", help="count range, e.g. 1-5")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="at most N bins")]
PerCountOpt = Annotated[int | None, typer.Option("--per-count", min=1, help="at most N bins per count")]
SHARDS = ShardsConfig.model_fields  # the options' defaults are the config's
IdsOpt = Annotated[str | None, typer.Option("--ids", help="file of bin ids, one per line")]


def _subset(subset: str | None, counts: str | None, limit: int | None, per_count: int | None, ids: str | None) -> Subset:
    try:
        return Subset(file_list=subset, ids_file=ids, counts=parse_counts(counts), limit=limit, per_count=per_count)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _print_stats(stats: DatasetStats) -> None:
    table = Table(title=f"{stats.total:,} bins")
    table.add_column("count", justify="right")
    table.add_column("bins", justify="right")
    table.add_column("share", justify="right")
    for count, n in stats.counts.items():
        table.add_row(str(count), f"{n:,}", f"{n / max(stats.total, 1):.1%}")
    console.print(table)
    sizes = ", ".join(f"{k}: {v:,}" for k, v in list(stats.sizes.items())[:5])
    console.print(f"image sizes: {sizes}")
    if stats.splits:
        console.print("splits: " + ", ".join(f"{k}: {v:,}" for k, v in stats.splits.items()))
    if stats.skipped:
        console.print("skipped: " + ", ".join(f"{k}: {v:,}" for k, v in stats.skipped.items()))


@data_app.command("fetch")
def fetch_cmd(
    source: str,
    out: Annotated[str, typer.Option("--out", help="local directory (ABID layout)")],
    subset: SubsetOpt = None,
    counts: CountsOpt = None,
    limit: LimitOpt = None,
    per_count: PerCountOpt = None,
    ids: IdsOpt = None,
    endpoint_url: EndpointOpt = None,
    workers: Annotated[int, typer.Option(min=1)] = 16,
) -> None:
    """Copy a subset of an ABID root (e.g. s3://aft-vbi-pds/) to a local cache: parallel, retried, resumable."""
    chosen = _subset(subset, counts, limit, per_count, ids)
    with reported_errors(), progress("fetching") as update:
        result = fetch(AbidRoot(source, endpoint_url), out, chosen, workers=workers, on_progress=update)
    console.print(
        f"selected {result.selected:,} bins: downloaded {result.downloaded:,} files, skipped {result.skipped:,} already here, "
        f"{len(result.failed):,} problems (see {out}/fetch.report.json)"
    )


@data_app.command("manifest")
def manifest_cmd(
    source: str,
    out: Annotated[str, typer.Option("--out", help="manifest Parquet path or URL")],
    subset: SubsetOpt = None,
    counts: CountsOpt = None,
    limit: LimitOpt = None,
    per_count: PerCountOpt = None,
    ids: IdsOpt = None,
    split: Annotated[str, typer.Option(help="train/val/test ratios")] = "80/10/10",
    seed: int = 0,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Build the manifest table: id, uri, count, sha256, size, split; bad bins go to a report beside it."""
    chosen = _subset(subset, counts, limit, per_count, ids)
    try:
        ratios = SplitRatios.parse(split)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with reported_errors():
        with progress("inspecting photos") as update:
            build = build_manifest(AbidRoot(source, endpoint_url), chosen, ratios, seed, on_progress=update)
        report = write_manifest(build, out, endpoint_url)
    _print_stats(manifest_stats(build.manifest))
    console.print(f"wrote {out} ({len(build.manifest.rows):,} bins); {len(build.problems):,} skipped, listed in {report}")


@data_app.command("shards")
def shards_cmd(
    manifest: str,
    out: Annotated[str, typer.Option("--out", help="folder or s3:// prefix for the shards and their indexes")],
    photos_per_shard: Annotated[int, typer.Option(min=1)] = SHARDS["photos_per_shard"].default,
    image_size: Annotated[int | None, typer.Option(help="store photos with the shorter side at most this (default: as they are)")] = None,
    seed: Annotated[int, typer.Option(help="the order photos are dealt into shards")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="shards built at once")] = SHARDS["workers"].default,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Write the manifest's photos with their counts into tar shards (WebDataset layout), one index per split:
    resumable, verified by sha256; `bintally train MANIFEST --shards OUT` streams them."""
    cfg = make_config(
        ShardsConfig, manifest=manifest, out=out, photos_per_shard=photos_per_shard, image_size=image_size, seed=seed,
        workers=workers, endpoint_url=endpoint_url,
    )  # fmt: skip
    with reported_errors(), progress("writing shards") as update:
        result = write_shards(cfg, on_progress=update)
    console.print(
        f"{result.photos:,} photos in {result.written + result.kept:,} shards ({result.written:,} written, "
        f"{result.kept:,} kept from an earlier run); indexes: {', '.join(result.indexes.values())}"
    )


@data_app.command("stats")
def stats_cmd(
    source: Annotated[str, typer.Argument(help="ABID root or manifest .parquet")],
    subset: SubsetOpt = None,
    counts: CountsOpt = None,
    limit: LimitOpt = None,
    per_count: PerCountOpt = None,
    ids: IdsOpt = None,
    plot: Annotated[str | None, typer.Option("--plot", help="write a bar chart PNG")] = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Count distribution and image sizes of an ABID root or a manifest."""
    chosen = _subset(subset, counts, limit, per_count, ids)
    with reported_errors():
        if source.endswith(".parquet"):
            stats = manifest_stats(read_manifest(source, endpoint_url))
        else:
            stats = root_stats(AbidRoot(source, endpoint_url), chosen)
    _print_stats(stats)
    if plot:
        storage.write_bytes(plot, plot_counts(stats), endpoint_url)
        console.print(f"wrote {plot}")


@data_app.command("preview")
def preview_cmd(
    source: str,
    out: Annotated[str, typer.Option("--out", help="PNG to write")],
    enhance: Annotated[str, typer.Option("--enhance", help="enhancement to show")] = "unsharp",
    n: Annotated[int, typer.Option("-n", min=1, max=16)] = 4,
    subset: SubsetOpt = None,
    counts: CountsOpt = None,
    ids: IdsOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Side-by-side PNG: original photos (top) and enhanced (bottom)."""
    if enhance != "unsharp":
        raise typer.BadParameter("only 'unsharp' is available", param_hint="--enhance")
    chosen = _subset(subset, counts, None, None, ids)
    with reported_errors():
        png = preview(AbidRoot(source, endpoint_url), chosen, Enhance(), n=n)
    storage.write_bytes(out, png, endpoint_url)
    console.print(f"wrote {out}")
