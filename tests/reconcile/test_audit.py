"""Audits: which records are marked for a recount, the Clopper-Pearson bound, and `reconcile --audit-rate` end to end."""

from __future__ import annotations

import csv
import math
import random
import shutil

import pytest
from typer.testing import CliRunner

from bintally.cli import app
from bintally.reconcile.audit import audit_marks, audit_report, batch_spread, clopper_pearson_upper, wrong_at_most
from bintally.reconcile.policy import DecisionPolicy, Reconciliation

IDS = [f"bin-{i:05d}" for i in range(20_000)]


@pytest.mark.parametrize("rate", [0.02, 0.1, 0.5])
def test_the_marked_share_is_the_rate_within_sampling_error(rate):
    """20,000 accepted, 20,000 flagged and 20,000 reviewed records. Must hold: of the accepted and of the flagged,
    the marked count is within 4 binomial standard deviations of rate x 20,000; no reviewed record is marked."""
    sd = math.sqrt(len(IDS) * rate * (1 - rate))
    for decision in ("accept", "mismatch"):
        marked = sum(audit_marks(IDS, [decision] * len(IDS), rate, seed=7))
        assert abs(marked - rate * len(IDS)) < 4 * sd, (decision, marked)
    assert not any(audit_marks(IDS, ["review"] * len(IDS), rate, seed=7))
    assert not any(audit_marks(IDS, [None] * len(IDS), rate, seed=7))  # an unreadable photo is not decided


def test_the_same_seed_marks_the_same_records_in_any_order_and_another_seed_others():
    decisions = ["accept", "mismatch"] * (len(IDS) // 2)
    marks = dict(zip(IDS, audit_marks(IDS, decisions, 0.1, seed=3)))
    order = list(range(len(IDS)))
    random.Random(0).shuffle(order)
    shuffled = [IDS[i] for i in order]
    assert dict(zip(shuffled, audit_marks(shuffled, [decisions[i] for i in order], 0.1, seed=3))) == marks
    assert dict(zip(IDS[:100], audit_marks(IDS[:100], decisions[:100], 0.1, seed=3))) == {i: marks[i] for i in IDS[:100]}
    other = dict(zip(IDS, audit_marks(IDS, decisions, 0.1, seed=4)))
    both = sum(marks[i] and other[i] for i in IDS)
    assert both < 0.2 * sum(marks.values())  # independent draws share about rate (10%) of the marks, not all


def binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_clopper_pearson_against_hand_worked_values():
    """k = 0: (1 - p)^n = 0.05, so p = 1 - 0.05^(1/n) (0.2589 for n = 10). k = n: 1. k = 1 of 10: 0.3942 (tables).
    k = 3 of 20: the p where P(X <= 3) = 0.05, found here by bisection on the binomial CDF with exact binomial
    coefficients (the same quantile as Beta(4, 17)'s 95th percentile)."""
    assert clopper_pearson_upper(0, 10) == pytest.approx(1 - 0.05 ** (1 / 10), abs=1e-9)
    assert clopper_pearson_upper(0, 10) == pytest.approx(0.2589, abs=1e-4)
    assert clopper_pearson_upper(10, 10) == clopper_pearson_upper(0, 0) == 1.0
    assert clopper_pearson_upper(1, 10) == pytest.approx(0.3942, abs=1e-4)
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if binomial_cdf(3, 20, mid) > 0.05 else (low, mid)
    assert clopper_pearson_upper(3, 20) == pytest.approx(low, abs=1e-9)
    assert clopper_pearson_upper(3, 20, confidence=0.99) > clopper_pearson_upper(3, 20) > clopper_pearson_upper(3, 200) > 3 / 200
    assert clopper_pearson_upper(500, 100_000) == pytest.approx(0.005383, abs=1e-6)  # large n: no overflow, near 0.005
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson_upper(3, 2)


FITTED = {
    "targets": {"max_accepted_error": 0.05, "max_false_flags": 0.05},
    "outcome": {"accepted": 0.5, "accepted_error": 0.03, "flagged": 0.1, "false_flags": 0.02, "review": 0.4, "recall": {}},
}


def result(expected: int, decision: str) -> Reconciliation:
    return Reconciliation(
        expected_quantity=expected, count=3, match_probability=0.5, far_probability=0.1, record_correct_probability=0.5, decision=decision
    )


def test_how_many_accepted_records_a_batch_may_get_wrong_by_hand():
    """40 accepted at 5%: P(X <= 3) = 0.862 and P(X <= 4) = 0.952, so up to 4 (10%) in 95% of batches; 6 at 5%:
    P(X = 0) = 0.735, P(X <= 1) = 0.967, so 1. Each against the smallest k whose exact binomial CDF reaches 0.95, and
    the spread narrows as batches grow (about 7.5% of 200, 5.6% of 4,000). None without a promise or an accept."""
    assert wrong_at_most(40, 0.05) == 4 and wrong_at_most(6, 0.05) == 1 and wrong_at_most(0, 0.05) == 0
    for n, p in [(40, 0.05), (200, 0.05), (57, 0.031), (1000, 0.002)]:
        assert wrong_at_most(n, p) == min(k for k in range(n + 1) if binomial_cdf(k, n, p) >= 0.95)
    assert wrong_at_most(4000, 0.05) / 4000 < wrong_at_most(200, 0.05) / 200 < wrong_at_most(40, 0.05) / 40
    promising = DecisionPolicy(fitted=FITTED)
    spread = batch_spread(40, promising)
    assert spread is not None and (spread.wrong_at_most, spread.promised) == (4, 0.05)
    assert batch_spread(0, promising) is None and batch_spread(40, DecisionPolicy()) is None
    assert spread.describe().endswith("the promise is a rate over batches")
    per_batch = DecisionPolicy(fitted=FITTED | {"targets": FITTED["targets"] | {"batch": {"records": 811, "max_error": 0.08}}})
    spread = batch_spread(40, per_batch)
    assert spread is not None and spread.describe().endswith("fitted to keep at most 8% wrong in 95% of batches of 811 records")
    with pytest.raises(ValueError, match="confidence"):
        wrong_at_most(40, 0.05, confidence=1.0)


def test_audit_report_counts_only_recounts_of_marked_records_by_hand():
    """Six records: accepted 3, 3, 3 (recounts 3, 4, 4), flagged 1, 5 (recounts 1, 2), reviewed 2 (recount 3).
    Marked: the first two accepted and both flagged. By hand: accepted 1 of 2 wrong (the unmarked third's recount
    is left out); flags false 1 of 2 (record 1, held 1); the review is never counted. The fitted policy promised
    5% wrong among accepted and expected 0.02 x 0.8 / 0.1 = 16% of flags false; both bounds pass: two warnings."""
    policy = DecisionPolicy(fitted=FITTED)
    results = [result(3, "accept"), result(3, "accept"), result(3, "accept"), result(1, "mismatch"), result(5, "mismatch")]
    results.append(result(2, "review"))
    report = audit_report(results, [3, 4, 4, 1, 2, 3], [True, True, False, True, True, False], policy, rate=0.5, seed=1)
    assert (report.marked, report.recounted) == (4, 4)
    assert (report.accepted.wrong, report.accepted.audited, report.accepted.promised) == (1, 2, 0.05)
    assert (report.flagged.wrong, report.flagged.audited) == (1, 2)
    assert report.flagged.promised == pytest.approx(0.16)
    assert report.accepted.upper == pytest.approx(clopper_pearson_upper(1, 2))
    assert len(report.warnings()) == 2 and report.warnings()[0].startswith("warning: accepted records wrong 1/2 = 50.0%")
    unmarked = audit_report(results, [3, 4, 4, 1, 2, 3], None, DecisionPolicy(), rate=0.0)
    assert (unmarked.accepted.wrong, unmarked.accepted.audited, unmarked.accepted.promised) == (2, 3, None)
    assert unmarked.warnings() == []  # explicit thresholds promise nothing


def test_reconcile_cli_marks_records_and_bounds_the_recounts(tmp_path, abid_root, small_artifact):
    """Twelve real photos and one corrupt file; the artifact's policy (fitted: 5% wrong among accepted promised)
    accepts when P(count = recorded) >= 0.14 and flags at <= 0.12: the small test model gives every photo
    P(4) >= 0.144 and P(2) <= 0.114, so records of 4 are accepted and records of 2 flagged. Tried: `reconcile
    --audit-rate 0.5 --audit-seed 1` with recounts for every record: marked accepted records right but one,
    marked flagged records wrong but one, unmarked ones all the opposite (they must not count). Must hold: the
    audit column equals `audit_marks` on (id, decision), blank for the unreadable photo; the same records are
    marked with the file reversed; the report shows the realised rates, bounds and promise, and a warning."""
    from bintally.model.artifact import load_artifact, write_spec

    model = str(tmp_path / "model")
    shutil.copytree(small_artifact, model)
    spec = load_artifact(model).spec
    spec.decision_policy = DecisionPolicy(accept_at=0.14, flag_at=0.12, fitted=FITTED)
    write_spec(model, spec)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((abid_root / "bin-images" / "00585.jpg").read_bytes()[:300])
    photos = sorted((abid_root / "bin-images").glob("*.jpg"))[:12]
    recorded = {p.stem: 4 if i % 2 else 2 for i, p in enumerate(photos)}
    decisions = {i: "accept" if q == 4 else "mismatch" for i, q in recorded.items()}
    marks = dict(zip(decisions, audit_marks(list(decisions), list(decisions.values()), 0.5, seed=1)))
    accepted = [i for i in recorded if decisions[i] == "accept" and marks[i]]
    flagged = [i for i in recorded if decisions[i] == "mismatch" and marks[i]]
    assert len(accepted) >= 2 and len(flagged) >= 2  # this seed marks some of each
    wrong = {accepted[0], flagged[0]}  # accepted: a wrong record; flagged: a right one (a false flag)

    def right(i: str) -> bool:  # whether the record was right; unmarked ones are the opposite, and must not count
        return (decisions[i] == "accept") != (i in wrong) if marks[i] else decisions[i] == "mismatch"

    truth = {i: q if right(i) else q + 1 for i, q in recorded.items()}
    lines = ["id,uri,expected_quantity", f"broken,{broken},2"] + [f"{p.stem},{p},{recorded[p.stem]}" for p in photos]
    (tmp_path / "records.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "reversed.csv").write_text("\n".join(lines[:1] + lines[:0:-1]) + "\n")
    (tmp_path / "recounts.csv").write_text("id,true_quantity\n" + "".join(f"{i},{t}\n" for i, t in truth.items()))
    outputs = {}
    for name in ("records", "reversed"):
        out = tmp_path / f"{name}-decisions.csv"
        args = [model, str(tmp_path / f"{name}.csv"), "--out", str(out), "--audit-rate", "0.5", "--audit-seed", "1"]
        run = CliRunner().invoke(app, ["reconcile", *args, "--audited", str(tmp_path / "recounts.csv")])
        assert run.exit_code == 0, run.output
        outputs[name] = {r["id"]: (r["decision"], r["audit"]) for r in csv.DictReader(out.open())}
    assert outputs["records"] == outputs["reversed"]
    assert outputs["records"] == {"broken": ("", "")} | {i: (decisions[i], str(marks[i]).lower()) for i in recorded}
    n, k = len(accepted), 1
    marked = len(accepted) + len(flagged)
    assert f"audit: marked {marked} (50.0% of accepted and of flagged, seed 1), {marked} recounted" in run.output
    bound = clopper_pearson_upper(k, n)
    assert f"accepted records wrong: 1/{n} = {k / n:.1%}, 95% upper bound {bound:.1%}; promised 5.0%" in run.output
    assert f"flags false: 1/{len(flagged)} = {1 / len(flagged):.1%}" in run.output
    assert f"warning: accepted records wrong 1/{n}" in run.output
    accepted = sum(d == "accept" for d in decisions.values())
    assert f"{accepted} accepted: with the promise (5.0% wrong) kept, up to {wrong_at_most(accepted, 0.05)} of them" in run.output
