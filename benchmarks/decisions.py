"""Inventory decisions on the test split: what the fitted policy accepts, catches and sends to people.

    python benchmarks/decisions.py MODEL MANIFEST            # the artifact's fitted policy (fitted on val if absent)
    python benchmarks/decisions.py MODEL MANIFEST --refit    # fit the temperature and policy on val again first
    python benchmarks/decisions.py MODEL MANIFEST --draws 1000  # and 1,000 drawn sets of records, one record per bin
    python benchmarks/decisions.py MODEL MANIFEST --draws 1000 --batch-sizes 811 4000 16000  # and batches of other sizes
    python benchmarks/decisions.py MODEL MANIFEST --draws 1000 --batch-targets 811 4000  # and policies fitted per batch

With --draws, each test bin gets one record per draw (right, or wrong as the error model says: off by 1, 2, 3 at
60/30/10% of 20%, kept >= 0 with an open top class), decided by `reconcile.policy.decide_many` as
`bintally reconcile` decides, with the policy as fitted and with the policy fitted again for the test bins' own
count distribution (`reconcile.prior.adapt_to_batch`, as `bintally reconcile --adjust-to-batch` does); and the same two
for a policy fitted on a balanced sample (validation re-weighted to equal count classes, as a sample of so many bins
per count would fit it) used on the test bins as they come, the shift the batch adjustment is for. Each row gives the
pooled error among accepted records, the first five draws', and how many draws passed `--draw-bound` (8%); the last
rows fit the policy with a batch target (`reconcile.fit.BatchTarget`: at most `--draw-bound` wrong in 95% of batches of
each `--batch-targets` size, by default a drawn set's; for that size also fitted again for the test bins). Also: records of
5 for bins that hold 7 or more (an understated record a warehouse most needs caught), and how many are accepted.
With --batch-sizes, the same policies on batches of other sizes (bins drawn from the test bins with replacement, each
with its own record): how the draws above the bound fall as a batch, and its accepted records, grow.

Records are simulated on the test split exactly as the policy was fitted on validation (`reconcile.fit`): each
bin's correct record and its wrong ones (off by 1, 2, 3 at 60/30/10% of a 20% record-error rate), every possible
record enumerated with its weight, so there is no sampling noise and no seed. Reports, for the fitted policy (all
statistics of `reconcile.policy` to choose from), for a policy fitted on validation with P(count = recorded) and
P(|count - recorded| >= 2) only (what the posterior statistics add), and for the old fixed thresholds (accept at
0.5, flag at 0.05): share accepted, error among accepted, recall of wrong records by size, false-flag rate, share
to review, and person-minutes per 1,000 bins against recounting every bin.
Also the best any threshold could do on test (for reference: chosen knowing the test answers, so not a result).
Writes JSON and two curves (PNG) under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, write_result
from matplotlib.figure import Figure

from bintally.counts import CountClasses
from bintally.data.manifest import read_manifest
from bintally.evaluate.calibrate import CalibrateConfig, calibrate, split_probabilities
from bintally.model.artifact import load_artifact
from bintally.reconcile.binomial import batch_share_above
from bintally.reconcile.fit import BatchTarget, Outcome, Targets, accept_curve, fit_policy, flag_curve, outcome, outcome_by_range, simulate
from bintally.reconcile.policy import ACCEPT_STATISTICS, FLAG_STATISTICS, STATISTIC_TEXT, DecisionPolicy, RecordErrors, decide_many
from bintally.reconcile.prior import adapt_to_batch


def minutes(o: Outcome, per_recount: float) -> float:
    """Person-minutes per 1,000 bins: every bin sent to review or flagged is recounted."""
    return 1000 * (o.review + o.flagged) * per_recount


def best_possible(records, targets: Targets) -> dict:
    """The best any single threshold does on these records (knowing their answers): a ceiling, not a result."""
    accepting = {}
    for statistic in ACCEPT_STATISTICS:
        _, accepted, error, _ = accept_curve(records, statistic)
        ok = error <= targets.max_accepted_error
        accepting[statistic] = float(accepted[ok].max()) if ok.any() else 0.0
    flagging = {}
    for statistic in FLAG_STATISTICS:
        _, false_flags, recall, _ = flag_curve(records, statistic)
        within = false_flags <= targets.max_false_flags
        flagging[statistic] = float(recall[within].max()) if within.any() else 0.0
    return {"accepted_within_error_target": accepting, "recall_2plus_within_flag_target": flagging}


def plot_curves(records, fitted: Outcome, targets: Targets, error_rate: float, out: Path) -> None:
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    for statistic in ACCEPT_STATISTICS:
        _, accepted, error, _ = accept_curve(records, statistic)
        left.plot(accepted, error, label=f"accept on {STATISTIC_TEXT[statistic]}")
    left.scatter([fitted.accepted], [fitted.accepted_error or 0], color="C3", zorder=3, label="fitted on validation")
    left.axhline(targets.max_accepted_error, color="k", linestyle="--", linewidth=1, label="target")
    left.set(xlabel="share of records accepted", ylabel="share of accepted records that are wrong", title="Accepting (test)")
    left.set_ylim(0, min(1.0, 1.5 * error_rate))  # the first few accepted records swing the share wildly
    for statistic in FLAG_STATISTICS:
        _, false_flags, recall, _ = flag_curve(records, statistic)
        right.plot(false_flags, recall, label=f"flag on {STATISTIC_TEXT[statistic]}")
    right.scatter([fitted.false_flags], [fitted.recall["2+"]], color="C3", zorder=3, label="fitted on validation")
    right.axvline(targets.max_false_flags, color="k", linestyle="--", linewidth=1, label="target")
    right.set(xlabel="share of correct records flagged", ylabel="share of records off by 2+ flagged", title="Flagging (test)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(out, dpi=110, bbox_inches="tight")


def table(rows: dict[str, Outcome], per_recount: float) -> str:
    lines = [
        "| policy | accepted | wrong among accepted | recall off by 1 | by 2 | by 3 | by 2+ | false flags | review "
        "| person-min / 1,000 bins (all: " + f"{1000 * per_recount:,.0f}) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, o in rows.items():
        error = "-" if o.accepted_error is None else f"{o.accepted_error:.1%}"
        recall = " | ".join(f"{o.recall.get(k, 0.0):.1%}" for k in ("1", "2", "3", "2+"))
        lines.append(
            f"| {name} | {o.accepted:.1%} | {error} | {recall} | {o.false_flags:.1%} | {o.review:.1%} | {minutes(o, per_recount):,.0f} |"
        )
    return "\n".join(lines)


def record_table(true_counts: np.ndarray, classes: CountClasses, errors: RecordErrors) -> tuple[np.ndarray, np.ndarray]:
    """Each bin's possible records and their cumulative chances ([N, W] each; `RecordErrors.recorded`), to draw from."""
    made = [errors.recorded(truth, classes) for truth in true_counts.tolist()]
    width = max(map(len, made))
    values = np.array([[*m, *[0] * (width - len(m))] for m in made])
    cumulative = np.ones((len(made), width))
    for b, m in enumerate(made):
        cumulative[b, : len(m) - 1] = np.cumsum(list(m.values()))[:-1] / sum(m.values())  # the last stays 1: always picked
    return values, cumulative


def draw_records(table: tuple[np.ndarray, np.ndarray], bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One record for each of `bins` (indices into the table's bins, any shape), right or wrong as the error model says."""
    values, cumulative = table
    u = rng.random(bins.shape)
    return values[bins, (u[..., None] > cumulative[bins]).sum(axis=-1)]


def tally(decisions: np.ndarray, recorded: np.ndarray, truth: np.ndarray) -> dict:
    """Counts a promise is checked on: accepted and how many of them wrong, correct records and how many flagged,
    records off by 2+ and how many flagged."""
    d, wrong, far = decisions, recorded != truth, np.abs(recorded - truth) >= 2
    return {
        "records": len(d),
        "accepted": int((d == "accept").sum()),
        "accepted_wrong": int(((d == "accept") & wrong).sum()),
        "correct": int((~wrong).sum()),
        "correct_flagged": int(((d == "mismatch") & ~wrong).sum()),
        "far": int(far.sum()),
        "far_flagged": int(((d == "mismatch") & far).sum()),
    }


def pooled(tallies: list[dict], bound: float) -> dict:
    """Totals over the draws, the pooled rates, the first five draws' error among accepted, and how many draws
    passed `bound` (of those that accepted any record)."""
    total = {k: sum(t[k] for t in tallies) for k in tallies[0]}
    per_draw = [t["accepted_wrong"] / t["accepted"] if t["accepted"] else None for t in tallies]
    rates = [e for e in per_draw if e is not None]
    return total | {
        "accepted_share": total["accepted"] / total["records"],
        "accepted_error": total["accepted_wrong"] / total["accepted"] if total["accepted"] else None,
        "accepted_error_first_draws": per_draw[:5],
        "draws": len(tallies),
        "draws_accepting": len(rates),
        "draws_above_bound": sum(e > bound for e in rates),
        "bound": bound,
        "false_flags": total["correct_flagged"] / max(total["correct"], 1),
        "recall_2plus": total["far_flagged"] / max(total["far"], 1),
    }


def drawn(probabilities: np.ndarray, truth: np.ndarray, classes: CountClasses, policy: DecisionPolicy, draws: int, bound: float) -> dict:
    """Pooled over `draws` drawn record sets (the same sets for every policy: seeded), decided as `bintally reconcile`
    decides them (`policy.decide_many`), overall and by the bins' count range."""
    table, rng, every_bin = record_table(truth, classes, policy.errors), np.random.default_rng(0), np.arange(len(truth))
    sets = [draw_records(table, every_bin, rng) for _ in range(draws)]  # a draw at a time: [N, W] temporaries, not [draws, N, W]
    decided = [decide_many(probabilities, r, classes, policy)[0] for r in sets]
    out = {"all": pooled([tally(d, r, truth) for d, r in zip(decided, sets)], bound)}
    clipped = classes.clip(truth)
    for name, (low, high) in classes.ranges().items():
        inside = (clipped >= low) & (clipped <= high)
        if inside.any():
            out[name] = pooled([tally(d[inside], r[inside], truth[inside]) for d, r in zip(decided, sets)], bound)
    return out


def by_batch_size(
    probabilities: np.ndarray, truth: np.ndarray, classes: CountClasses, policy: DecisionPolicy, sizes: list[int], draws: int, bound: float
) -> dict[int, dict]:
    """Pooled over `draws` batches of each size: a batch is that many bins drawn from these with replacement (a
    warehouse's week from the same population), each with its own drawn record, decided by `policy.decide_many`.
    The share of wrong records among a batch's accepted ones swings less as the batch, and its accepted records, grow."""
    table, rng = record_table(truth, classes, policy.errors), np.random.default_rng(0)
    out = {}
    for size in sizes:
        tallies = []
        for _ in range(draws):
            bins = rng.integers(0, len(truth), size)
            recorded = draw_records(table, bins, rng)
            tallies.append(tally(decide_many(probabilities[bins], recorded, classes, policy)[0], recorded, truth[bins]))
        out[size] = pooled(tallies, bound)
        o = out[size]  # beside what the batch target's binomial sum says of batches with these rates
        o["binomial_above"] = batch_share_above(size, o["accepted_share"], o["accepted_error"], bound) if o["accepted"] else None
    return out


def understated(probabilities: np.ndarray, truth: np.ndarray, classes: CountClasses, policy: DecisionPolicy) -> dict:
    """Records of 5 for the bins that hold 7 or more: how many are accepted, flagged, reviewed."""
    many = truth >= 7
    decided = decide_many(probabilities[many], np.full(int(many.sum()), 5), classes, policy)[0]
    return {"bins": int(many.sum()), **{d: int((decided == d).sum()) for d in ("accept", "mismatch", "review")}}


def drawn_table(rows: dict[str, dict]) -> str:
    lines = [
        "| policy | bins | records accepted (per draw) | wrong among accepted: pooled (first five draws) | draws above the bound "
        "| correct records flagged | off by 2+ flagged |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, by_range in rows.items():
        for part, o in by_range.items():
            error = "-" if o["accepted_error"] is None else f"{o['accepted_error']:.1%}"
            first = ", ".join("-" if e is None else f"{e:.0%}" for e in o["accepted_error_first_draws"])
            above = f"{o['draws_above_bound']:,} of {o['draws_accepting']:,} (> {o['bound']:.0%})" if o["draws_accepting"] else "-"
            lines.append(
                f"| {name} | {part} | {o['accepted_share']:.1%} ({o['accepted'] / o['draws']:.1f}) | {error} ({first}) | {above} | "
                f"{o['false_flags']:.1%} | {o['recall_2plus']:.1%} |"
            )
    return "\n".join(lines)


def batch_table(rows: dict[str, dict[int, dict]]) -> str:
    lines = [
        "| policy | records per batch | accepted per batch | wrong among accepted, pooled | batches above the bound |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, by_size in rows.items():
        for size, o in by_size.items():
            error = "-" if o["accepted_error"] is None else f"{o['accepted_error']:.1%}"
            above = f"{o['draws_above_bound']:,} of {o['draws_accepting']:,} (> {o['bound']:.0%})" if o["draws_accepting"] else "-"
            lines.append(f"| {name} | {size:,} | {o['accepted'] / o['draws']:.1f} | {error} | {above} |")
    return "\n".join(lines)


def balanced_weights(counts: np.ndarray, classes: CountClasses) -> np.ndarray:
    """Bin weights under which every count class weighs the same (`fit.simulate`'s bin_weights)."""
    index = classes.index(counts)
    return 1 / np.bincount(index, minlength=len(classes.values))[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("manifest")
    parser.add_argument("--split", default="test", help="where the decisions are measured")
    parser.add_argument("--fit-split", default="val", help="where the temperature and policy are fitted")
    parser.add_argument("--refit", action="store_true", help="fit again even if the artifact has a policy")
    parser.add_argument("--minutes-per-recount", type=float, default=2.0, help="assumed person-minutes to recount one bin")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/decisions-MODEL.json)")
    parser.add_argument("--draws", type=int, default=0, help="also decide this many drawn record sets, one record per bin")
    parser.add_argument("--draw-bound", type=float, default=0.08, help="count the draws whose accepted records are wrong beyond this")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="*",
        default=[],
        help="with --draws: as many batches of each size (bins drawn with replacement)",
    )
    parser.add_argument(
        "--batch-targets",
        type=int,
        nargs="*",
        default=[],
        help="with --draws: also fit the policy with a batch target for each size (default: a drawn set's size)",
    )
    args = parser.parse_args()

    started = time.monotonic()
    if args.refit or load_artifact(args.model).spec.decision_policy is None:
        calibrate(CalibrateConfig(model=args.model, manifest=args.manifest, split=args.fit_split, device=args.device))
    artifact = load_artifact(args.model)
    spec, policy = artifact.spec, artifact.spec.decision_policy
    assert policy is not None and policy.fitted is not None
    errors, targets = RecordErrors.model_validate(policy.fitted["errors"]), Targets.model_validate(policy.fitted["targets"])
    manifest = read_manifest(args.manifest)
    # The same fit on the same validation split with the model-only statistics, for comparison.
    classes = spec.count_classes
    val_probabilities, val_truth = split_probabilities(artifact, manifest, policy.fitted["split"], args.device)
    model_only = fit_policy(
        val_probabilities, val_truth.tolist(), classes, targets, errors, accept_statistics=["match"], flag_statistics=["match", "far"]
    )
    probabilities, truth = split_probabilities(artifact, manifest, args.split, args.device)
    records = simulate(probabilities, truth.tolist(), classes, errors)
    rows = {
        "fitted on validation": outcome(records, policy),
        "fitted, model-only statistics": outcome(records, model_only),
        "fixed 0.5 / 0.05": outcome(records, DecisionPolicy()),
    }
    out = args.out or RESULTS / f"decisions-{spec.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(records, rows["fitted on validation"], targets, errors.rate, out.with_suffix(".png"))
    summary = table(rows, args.minutes_per_recount)
    by_range = {name: o.model_dump() for name, o in outcome_by_range(records, policy, classes).items()}
    deciders, adapted, on_balanced = {}, None, None  # name -> (the probabilities decided on, the policy deciding)
    held: dict[int, DecisionPolicy] = {}  # batch size -> the policy fitted with a batch target for it
    if args.draws:
        fit = artifact.fit_data()
        deciders["as fitted"] = (probabilities, policy)
        if fit is not None:
            adapted = adapt_to_batch(probabilities, *fit, classes, policy)
            deciders["fitted again for the batch"] = (adapted.probabilities, adapted.policy)
        weights = balanced_weights(val_truth, classes)
        on_balanced = fit_policy(
            val_probabilities, val_truth.tolist(), classes, targets, errors, bin_weights=weights,
            accept_statistics=list(policy.fitted["accepted"]), flag_statistics=list(policy.fitted["recall_2plus"]),
        )  # fmt: skip
        deciders["fitted on a balanced sample"] = (probabilities, on_balanced)
        shifted = adapt_to_batch(probabilities, val_probabilities, val_truth, classes, on_balanced, fit_weights=weights)
        deciders["balanced, fitted again for the batch"] = (shifted.probabilities, shifted.policy)
        # The same fit with batch targets: at most --draw-bound wrong in 95% of batches of each size.
        for size in args.batch_targets or [len(truth)]:
            per_batch = targets.model_copy(update={"batch": BatchTarget(records=size, max_error=args.draw_bound)})
            held[size] = fit_policy(
                val_probabilities, val_truth.tolist(), classes, per_batch, errors,
                accept_statistics=list(policy.fitted["accepted"]), flag_statistics=list(policy.fitted["recall_2plus"]),
            )  # fmt: skip
            deciders[f"batch target {size:,}"] = (probabilities, held[size])
            if fit is not None and size == len(truth):  # fitted again for the batch: for its own size
                again = adapt_to_batch(probabilities, *fit, classes, held[size])
                deciders[f"batch target {size:,}, fitted again for the batch"] = (again.probabilities, again.policy)
    sampled = {name: drawn(p, truth, classes, decider, args.draws, args.draw_bound) for name, (p, decider) in deciders.items()}
    batches = {
        name: by_batch_size(p, truth, classes, decider, args.batch_sizes, args.draws, args.draw_bound)
        for name, (p, decider) in deciders.items()
        if args.batch_sizes
    }
    ceiling = best_possible(records, targets)
    print(f"{spec.name} {spec.version} on the {args.split} split ({len(truth):,} bins), temperature {spec.temperature:.3f}")
    print(f"policy (fitted on {policy.fitted['split']}): {policy.describe()}")
    print(f"model-only statistics (fitted on {policy.fitted['split']}): {model_only.describe()}")
    print(summary)
    print(f"best any threshold does on {args.split} (knowing its answers; a ceiling, not a result): {ceiling}")
    if sampled:
        print(drawn_table(sampled))
        if adapted is not None:
            print(f"the test bins' count distribution, estimated: {adapted.batch_prior} (fitted on: {adapted.fitted_prior})")
    if batches:
        print(batch_table(batches))
    low = understated(probabilities, truth, classes, policy)
    print(f"records of 5 for bins of 7 or more: {low}")
    result = {
        "model": {"name": spec.name, "version": spec.version, "path": args.model, "test_metrics": spec.metrics or None},
        "manifest": args.manifest,
        "split": args.split,
        "bins": len(truth),
        "temperature": spec.temperature,
        "calibration": spec.calibration,
        "policy": policy.model_dump(),
        "policy_model_only_statistics": model_only.model_dump(),
        "errors": errors.model_dump(),
        "minutes_per_recount": args.minutes_per_recount,
        "outcomes": {k: v.model_dump() for k, v in rows.items()},
        "outcome_by_range": by_range,
        "draws": args.draws,
        "drawn": sampled,
        "batch_prior": adapted.batch_prior if adapted else None,
        "policy_for_batch": adapted.policy.model_dump() if adapted else None,
        "policy_on_balanced_sample": on_balanced.model_dump() if on_balanced else None,
        "policies_with_batch_targets": {str(size): p.model_dump() for size, p in held.items()},
        "understated_records": low,
        "drawn_table": drawn_table(sampled) if sampled else None,
        "by_batch_size": {name: {str(size): o for size, o in by_size.items()} for name, by_size in batches.items()},
        "batch_table": batch_table(batches) if batches else None,
        "ceiling_on_this_split": ceiling,
        "table": summary,
    }
    write_result(out, result, started, "decisions.py")
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
