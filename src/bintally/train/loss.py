"""Training losses per head, all on [N, K] logits and target class indices."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from bintally.model.heads import regression_value
from bintally.train.config import TrainConfig

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def soft_ordinal_targets(class_values: torch.Tensor, target: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian soft labels over neighbouring counts: a bin labelled 3 also teaches a little about 2 and 4."""
    true_counts = class_values[target][:, None]
    weights = torch.exp(-((class_values[None, :] - true_counts) ** 2) / (2 * sigma**2))
    return weights / weights.sum(dim=1, keepdim=True)


def make_loss(cfg: TrainConfig, class_values: torch.Tensor) -> Loss:
    if cfg.head == "regression":
        return lambda logits, target: F.smooth_l1_loss(regression_value(logits, class_values), class_values[target])
    if cfg.head == "ordinal":
        return lambda logits, target: F.cross_entropy(logits, soft_ordinal_targets(class_values, target, cfg.ordinal_sigma))
    return lambda logits, target: F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
