"""`bintally calibrate`: refit temperature and decision policy on validation (needs the `train` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from bintally.cli.app import app, console, make_config, reported_errors
from bintally.cli.reconcile import ERRORS, TARGETS, parse_sizes
from bintally.evaluate.calibrate import CalibrateConfig, calibrate
from bintally.reconcile.fit import BatchTarget, Targets, batch_target
from bintally.reconcile.policy import RecordErrors

BATCH = {name: BatchTarget.model_fields[name].default for name in ("max_error", "share")}


@app.command("calibrate")
def calibrate_cmd(
    model: Annotated[str, typer.Argument(help="model artifact directory; its model.json is updated")],
    manifest: Annotated[str, typer.Argument(help="manifest .parquet with labelled bins")],
    split: Annotated[str, typer.Option(help="held-out split to fit on (never test, nor all, which holds it)")] = "val",
    max_accepted_error: Annotated[float, typer.Option(help="of accepted records, at most this share wrong")] = TARGETS.max_accepted_error,
    max_false_flags: Annotated[float, typer.Option(help="of correct records, at most this share flagged")] = TARGETS.max_false_flags,
    confidence: Annotated[
        float | None, typer.Option(help="share of bootstrap resamples of the bins in which each target must hold")
    ] = TARGETS.confidence,
    batch_records: Annotated[
        int | None, typer.Option(help="also keep each batch of this many records under --batch-max-error [default: no batch target]")
    ] = None,
    batch_max_error: Annotated[float, typer.Option(help="of a batch's accepted records, at most this share wrong")] = BATCH["max_error"],
    batch_share: Annotated[float, typer.Option(help="in at least this share of batches")] = BATCH["share"],
    error_rate: Annotated[float, typer.Option(help="simulated share of wrong records")] = ERRORS.rate,
    error_sizes: Annotated[str, typer.Option(help="how far off wrong records are, SIZE:SHARE")] = ",".join(
        f"{d}:{s:g}" for d, s in ERRORS.sizes.items()
    ),
    flips: Annotated[
        str | None, typer.Option(help="test-time flips to average over: left-right,top-bottom or none [default: the artifact's]")
    ] = None,
    shards: Annotated[
        str | None, typer.Option(help="read the split's photos from these shards (`data shards MANIFEST --out SHARDS`), not files")
    ] = None,
    device: str = "auto",
) -> None:
    """Fit the temperature (probabilities) and the decision policy on validation data, into the artifact."""
    if batch_records is None and (batch_max_error, batch_share) != (BATCH["max_error"], BATCH["share"]):
        raise typer.BadParameter("--batch-max-error and --batch-share need --batch-records (the batch size they hold for)")
    batch = None if batch_records is None else make_config(BatchTarget, records=batch_records, max_error=batch_max_error, share=batch_share)
    targets = make_config(
        Targets, max_accepted_error=max_accepted_error, max_false_flags=max_false_flags, confidence=confidence, batch=batch
    )
    errors = make_config(RecordErrors, rate=error_rate, sizes=parse_sizes(error_sizes))
    chosen = None if flips is None else [f for f in flips.split(",") if f and f != "none"]
    cfg = make_config(
        CalibrateConfig,
        model=model,
        manifest=manifest,
        split=split,
        targets=targets,
        errors=errors,
        flips=chosen,
        device=device,
        shards=shards,
    )
    with reported_errors(), console.status(f"scoring the {split} split"):
        result = calibrate(cfg)
    r = result.report
    console.print(
        f"temperature {r.temperature:.3f} on {r.bins:,} {r.split} bins: "
        f"NLL {r.nll_before:.3f} -> {r.nll_after:.3f}, ECE {r.ece_before:.3f} -> {r.ece_after:.3f}"
    )
    console.print(f"policy: {result.policy.describe()}")
    fitted = result.policy.fitted or {}
    o = fitted.get("outcome", {})
    if o:
        error = "-" if o["accepted_error"] is None else f"{o['accepted_error']:.1%}"
        console.print(
            f"on {r.split}: accepts {o['accepted']:.1%} of records ({error} of them wrong), flags {o['false_flags']:.1%} of correct "
            f"records and {o['recall']['2+']:.1%} of those off by 2+, sends {o['review']:.1%} to review"
        )
    if (target := batch_target(result.policy)) and o.get("accepted"):
        console.print(
            f"  batches of {target.records:,} records: over {target.max_error:.0%} of the accepted ones wrong in "
            f"{fitted['batches_over_cap']:.1%} of them (at most {1 - target.share:.0%} allowed)"
        )
    for name, part in fitted.get("by_range", {}).items():
        error = "-" if part["accepted_error"] is None else f"{part['accepted_error']:.1%}"
        flagged = f"{part['false_flags']:.1%}"
        console.print(f"  bins of {name}: accepts {part['accepted']:.1%} ({error} wrong), flags {flagged} of correct records")
    for note in fitted.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    if result.int8:
        i = result.int8
        console.print(f"int8 quantised again and checked: on {i.check_photos} {i.check_split} photos it gives {i.described()}")
    console.print(f"wrote {model}/model.json")
