"""Count heads on a backbone. Every model maps [N, 3, H, W] to [N, K] logits.

- classify: a linear layer, one logit per count class;
- ordinal: the same layer; it differs in training, where the target is a
  Gaussian spread over neighbouring counts (see `train.loss`);
- regression: one number y per image, emitted as the logits
  -(c - y)^2 / (2 s^2) over the classes c, so that softmax is a distribution
  centred on y and argmax is y rounded and clipped to the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bintally.counts import CountClasses
from bintally.model.backbones import Backbone, create_backbone
from bintally.model.spec import HEADS, Head

REGRESSION_SPREAD = 0.5  # s: how sharply the regression head's probabilities fall off around y


def regression_logits(y: torch.Tensor, class_values: torch.Tensor) -> torch.Tensor:
    """[N] predicted counts -> [N, K] logits peaking at the class nearest each count."""
    return -((class_values[None, :] - y[:, None]) ** 2) / (2 * REGRESSION_SPREAD**2)


def regression_value(logits: torch.Tensor, class_values: torch.Tensor) -> torch.Tensor:
    """Invert `regression_logits`: the quadratic's peak from any two classes' logits (exact, differentiable)."""
    c0, c1 = class_values[0], class_values[1]
    return (c0 + c1) / 2 + REGRESSION_SPREAD**2 * (logits[:, 1] - logits[:, 0]) / (c1 - c0)


class CountModel(nn.Module):
    class_values: torch.Tensor  # a buffer: the count of each class, as floats

    def __init__(self, backbone: Backbone, head: Head, classes: Sequence[int]):
        super().__init__()
        self.backbone = backbone
        self.head_kind = head
        self.head = nn.Linear(backbone.num_features, 1 if head == "regression" else len(classes))
        # Not a parameter and not saved: the classes live in the artifact's model.json.
        self.register_buffer("class_values", torch.tensor(list(classes), dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.count_logits(self.backbone(x))

    def count_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled [N, F] features -> [N, K] logits."""
        out = self.head(features)
        if self.head_kind == "regression":
            return regression_logits(out[:, 0], self.class_values)
        return out


def create_model(backbone: str, head: str, classes: list[int], weights: str = "packaged") -> CountModel:
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}: use one of {', '.join(HEADS)}")
    return CountModel(create_backbone(backbone, weights), head, CountClasses(values=classes).values)
