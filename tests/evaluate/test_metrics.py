"""Count metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bintally.counts import CountClasses
from bintally.evaluate.metrics import (
    constant_answer,
    count_metrics,
    metrics_from_logits,
    neighbour_auc,
    range_metrics,
)

# Six bins: recorded counts and predictions. Errors: 0, 0, +1, -2, 0, +1.
TRUE = [1, 2, 2, 3, 4, 5]
PRED = [1, 2, 3, 1, 4, 6]


def test_scalar_metrics_by_hand():
    """accuracy 3/6, within one 5/6, MAE 4/6, RMSE sqrt(6/6), per-count accuracy per recorded count."""
    m = count_metrics(TRUE, PRED)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["within_one"] == pytest.approx(5 / 6)
    assert m["mae"] == pytest.approx(4 / 6)
    assert m["rmse"] == pytest.approx(math.sqrt(6 / 6))
    assert m["per_count"] == {"1": 1.0, "2": 0.5, "3": 0.0, "4": 1.0, "5": 0.0}


def test_constant_answer_is_the_most_common_reference_count():
    """References 2, 3, 3, 4 -> always 3; on TRUE (1, 2, 2, 3, 4, 5): accuracy 1/6, within one 4/6, MAE 7/6.
    A tie (2, 2, 3, 3) goes to the smaller count, 2: accuracy 2/6."""
    b = constant_answer([2, 3, 3, 4], TRUE)
    assert b["answer"] == 3
    assert b["accuracy"] == pytest.approx(1 / 6) and b["within_one"] == pytest.approx(4 / 6) and b["mae"] == pytest.approx(7 / 6)
    assert constant_answer([2, 2, 3, 3], TRUE)["answer"] == 2
    with pytest.raises(ValueError, match="at least one"):
        constant_answer([], TRUE)


def test_macro_f1_and_confusion_by_hand():
    """Labels 1-6 (6 is only predicted). F1: 1: 2/3, 2: 2/3, 3: 0, 4: 1, 5: 0, 6: 0 -> mean 7/18.
    Confusion rows are recorded counts, columns predictions."""
    m = count_metrics(TRUE, PRED)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0 + 1 + 0 + 0) / 6)
    assert m["confusion"]["labels"] == [1, 2, 3, 4, 5, 6]
    matrix = np.array(m["confusion"]["matrix"])
    assert matrix.sum() == 6 and matrix[1, 1] == 1 and matrix[1, 2] == 1 and matrix[2, 0] == 1 and matrix[4, 5] == 1


def test_accuracy_at_coverage_keeps_the_most_confident():
    """Ten bins, confidence falling; the first four right, the rest wrong: 10-40% coverage 1.0, 50% 0.8, 100% 0.4."""
    true = [1] * 10
    pred = [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    confidence = np.linspace(0.9, 0.3, 10)
    probs = np.stack([confidence, 1 - confidence], axis=1)
    coverage = count_metrics(true, pred, probs, classes=[1, 2])["coverage"]
    assert [coverage[k] for k in ("10", "40", "50", "100")] == [1.0, 1.0, pytest.approx(0.8), pytest.approx(0.4)]
    assert list(coverage) == [str(x) for x in range(10, 101, 10)]


def test_neighbour_auc_by_hand():
    """Classes 1, 2, 3. log p(2) - log p(1): bins recorded 1 at log 0.5 and 0, bins recorded 2 at 0 and log 3; of
    the four (2, 1) pairs, 0 > log 0.5, 0 = 0 (a half), log 3 beats both -> 3.5 / 4. log p(3) - log p(2): bins
    recorded 2 at log 0.5 and log 1/3, the bin recorded 3 at log 2 beats both -> 1.0. A pair whose counts do not
    both occur is left out, count_metrics carries the same numbers, and probabilities that do not match the
    classes are refused."""
    probabilities = np.array([[0.6, 0.3, 0.1], [0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6]])
    true = [1, 1, 2, 2, 3]
    assert neighbour_auc(true, probabilities, [1, 2, 3]) == {"1-2": pytest.approx(3.5 / 4), "2-3": pytest.approx(1.0)}
    assert list(neighbour_auc([1, 1, 2, 2, 2], probabilities, [1, 2, 3])) == ["1-2"]
    pred = [1, 1, 1, 2, 3]
    assert count_metrics(true, pred, probabilities, [1, 2, 3])["neighbour_auc"]["1-2"] == pytest.approx(3.5 / 4)
    assert "neighbour_auc" not in count_metrics(true, pred, probabilities)
    with pytest.raises(ValueError, match="probabilities over the classes"):
        neighbour_auc(true, probabilities, [1, 2])
    # With an open top class the pair and the count are named as the class is: "3+", not "3".
    open_top = CountClasses(values=[1, 2, 3], open_top=True)
    assert list(neighbour_auc(true, probabilities, open_top)) == ["1-2", "2-3+"]
    assert list(count_metrics(true, pred, probabilities, open_top)["per_count"]) == ["1", "2", "3+"]
    # Counts above the open class's are that class: a bin of 7 answered "3+" is right, and counted with the 3s.
    above = count_metrics([1, 1, 2, 2, 7], [1, 1, 1, 2, 3], probabilities, open_top)
    assert above["per_count"]["3+"] == 1.0 and above["accuracy"] == pytest.approx(0.8)
    assert neighbour_auc([1, 1, 2, 2, 7], probabilities, open_top) == neighbour_auc(true, probabilities, open_top)


def test_metrics_from_logits_uses_class_values():
    """Class i means count classes[i]: logits peaking at index 0 over classes [3, 4] predict a count of 3."""
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    m = metrics_from_logits(logits, [3, 4, 4], classes=[3, 4])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["coverage"]["100"] == pytest.approx(2 / 3)


def test_empty_or_mismatched_input_is_refused():
    """No labels, or fewer predictions than labels, is a clear error."""
    with pytest.raises(ValueError, match="at least one"):
        count_metrics([], [])
    with pytest.raises(ValueError, match="as many predictions"):
        count_metrics([1, 2], [1])


def test_range_metrics_by_hand():
    """Classes 0, 1, ..., 6 and 7+ (as 0-6, 7+): a bin of 12 answered 7+ is right; ranges, the AUC of 'more than
    5' and the 1-5 bins answered among 1-5 alone are worked by hand."""
    classes = CountClasses(values=list(range(8)), open_top=True)
    true = [0, 2, 3, 6, 12]
    p = np.full((5, 8), 0.01)
    for row, answer in enumerate([0, 6, 3, 6, 7]):  # the 2 is answered 6; its best among 1-5 is 2 (0.05)
        p[row, answer] = 0.9
    p[1, 2] = 0.05
    m = range_metrics(true, p / p.sum(axis=1, keepdims=True), classes)
    assert m["ranges"]["0"]["accuracy"] == 1.0 and m["ranges"]["0"]["n"] == 1
    assert m["ranges"]["1-5"]["accuracy"] == 0.5 and m["ranges"]["1-5"]["n"] == 2
    assert m["ranges"]["6-6"]["accuracy"] == 1.0 and m["ranges"]["7+"]["accuracy"] == 1.0
    # P(count > 5): 0.91 / 0.97 for the bins of 6 and 12, above 0.91 / 1.01 for the 2 and 0.02 / 0.97 for 0 and 3.
    assert m["more_than_5_auc"] == 1.0
    assert m["small_counts_only"]["accuracy"] == 1.0 and m["small_counts_only"]["n"] == 2
    assert metrics_from_logits(np.log(p), true, classes)["accuracy"] == pytest.approx(0.8)  # 12 scores as 7+
