"""Count heads: every head maps images to [N, K] logits over the count classes."""

from __future__ import annotations

import pytest
import torch

from bintally.model.heads import create_model, regression_logits, regression_value

CLASSES = [1, 2, 3, 4, 5]


@pytest.mark.parametrize("head", ["classify", "ordinal", "regression"])
def test_heads_emit_logits_over_classes(head):
    """Each head on a real backbone gives [N, K] logits, K = number of count classes."""
    model = create_model("tf_efficientnet_lite0", head, CLASSES).eval()
    with torch.no_grad():
        logits = model(torch.zeros(3, 3, 64, 64))
    assert logits.shape == (3, len(CLASSES))
    assert torch.isfinite(logits).all()


def test_regression_logits_round_and_clip():
    """Regression logits: argmax is the rounded count clipped to the classes, and the count decodes back exactly."""
    values = torch.tensor(CLASSES, dtype=torch.float32)
    y = torch.tensor([0.2, 1.4, 2.6, 4.49, 9.0])
    logits = regression_logits(y, values)
    assert [CLASSES[i] for i in logits.argmax(-1)] == [1, 1, 3, 4, 5]
    assert torch.allclose(regression_value(logits, values), y, atol=1e-5)


def test_bad_classes_and_heads_are_refused():
    """One class, unsorted classes and unknown heads are clear errors."""
    with pytest.raises(ValueError, match="at least two distinct counts"):
        create_model("resnet18", "classify", [3], weights="none")
    with pytest.raises(ValueError, match="increasing order"):
        create_model("resnet18", "classify", [2, 1], weights="none")
    with pytest.raises(ValueError, match="unknown head"):
        create_model("resnet18", "softmax", CLASSES, weights="none")
