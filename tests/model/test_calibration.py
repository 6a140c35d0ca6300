"""Temperature scaling: fitted by minimum NLL, it repairs an over-confident model on data it did not see."""

from __future__ import annotations

import numpy as np
import pytest

from bintally.evaluate.metrics import expected_calibration_error
from bintally.model.calibration import fit_temperature, nll, softmax


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), reported as logits 3z: a model three times too sure of itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, (n, 5))
    p = softmax(z)
    labels = np.array([rng.choice(5, p=row) for row in p])
    return 3 * z, labels


def test_an_overconfident_model_gets_a_temperature_above_one_and_a_lower_ece_on_held_back_data():
    """Fit on 4,000 examples; judge on 4,000 others. Must hold: T near 3 (the truth), lower NLL and ECE there."""
    fit_logits, fit_labels = overconfident(4000, seed=0)
    logits, labels = overconfident(4000, seed=1)
    t = fit_temperature(fit_logits, fit_labels)
    assert 2.6 < t < 3.4
    assert nll(logits, labels, t) < nll(logits, labels)
    before, after = expected_calibration_error(softmax(logits), labels), expected_calibration_error(softmax(logits, t), labels)
    assert after < before / 3 and after < 0.03


def test_the_fitted_temperature_is_the_nll_minimum_and_never_changes_the_predicted_class():
    logits, labels = overconfident(500, seed=2)
    t = fit_temperature(logits, labels)
    assert nll(logits, labels, t) <= min(nll(logits, labels, t * f) for f in (0.9, 0.99, 1.01, 1.1))
    assert (softmax(logits, t).argmax(1) == logits.argmax(1)).all()


def test_softmax_rows_sum_to_one_even_for_huge_logits():
    p = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]]), temperature=0.5)
    assert p.sum(axis=1) == pytest.approx([1, 1]) and p[0, 0] == 1.0 and p[1, 0] == pytest.approx(1 / 3)


def test_no_labels_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one"):
        fit_temperature(np.zeros((0, 5)), np.zeros(0, int))
