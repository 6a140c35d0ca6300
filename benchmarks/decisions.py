"""Inventory decisions on the test split: what the fitted policy accepts, catches and sends to people.

    python benchmarks/decisions.py MODEL MANIFEST            # the artifact's fitted policy (fitted on val if absent)
    python benchmarks/decisions.py MODEL MANIFEST --refit    # fit the temperature and policy on val again first

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

from _results import RESULTS, write_result
from matplotlib.figure import Figure

from bintally.data.manifest import read_manifest
from bintally.evaluate.calibrate import CalibrateConfig, calibrate, class_targets, split_logits
from bintally.model.artifact import load_artifact
from bintally.model.calibration import softmax
from bintally.reconcile.fit import Outcome, Targets, accept_curve, fit_policy, flag_curve, outcome, simulate
from bintally.reconcile.policy import ACCEPT_STATISTICS, FLAG_STATISTICS, STATISTIC_TEXT, DecisionPolicy, RecordErrors


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
    val_logits, val_counts = split_logits(artifact, manifest, policy.fitted["split"], args.device)
    val_known, _ = class_targets(val_counts, spec.classes)
    model_only = fit_policy(
        softmax(val_logits[val_known], spec.temperature), val_counts[val_known].tolist(), spec.classes, targets, errors,
        accept_statistics=["match"], flag_statistics=["match", "far"],
    )  # fmt: skip
    logits, counts = split_logits(artifact, manifest, args.split, args.device)
    known, _ = class_targets(counts, spec.classes)
    records = simulate(softmax(logits[known], spec.temperature), counts[known].tolist(), spec.classes, errors)
    rows = {
        "fitted on validation": outcome(records, policy),
        "fitted, model-only statistics": outcome(records, model_only),
        "fixed 0.5 / 0.05": outcome(records, DecisionPolicy()),
    }
    out = args.out or RESULTS / f"decisions-{spec.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(records, rows["fitted on validation"], targets, errors.rate, out.with_suffix(".png"))
    summary = table(rows, args.minutes_per_recount)
    ceiling = best_possible(records, targets)
    print(f"{spec.name} {spec.version} on the {args.split} split ({int(known.sum()):,} bins), temperature {spec.temperature:.3f}")
    print(f"policy (fitted on {policy.fitted['split']}): {policy.describe()}")
    print(f"model-only statistics (fitted on {policy.fitted['split']}): {model_only.describe()}")
    print(summary)
    print(f"best any threshold does on {args.split} (knowing its answers; a ceiling, not a result): {ceiling}")
    result = {
        "model": {"name": spec.name, "version": spec.version, "path": args.model, "test_metrics": spec.metrics or None},
        "manifest": args.manifest,
        "split": args.split,
        "bins": int(known.sum()),
        "temperature": spec.temperature,
        "calibration": spec.calibration,
        "policy": policy.model_dump(),
        "policy_model_only_statistics": model_only.model_dump(),
        "errors": errors.model_dump(),
        "minutes_per_recount": args.minutes_per_recount,
        "outcomes": {k: v.model_dump() for k, v in rows.items()},
        "ceiling_on_this_split": ceiling,
        "table": summary,
    }
    write_result(out, result, started, "decisions.py")
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
