"""An auxiliary training target from the ABID metadata (`TrainConfig.aux_target`).

Each bin's metadata records its items' dimensions and weights, so the manifest carries the summed item volume
and weight of every bin. Both grow with the count, and they are known for every training photo: predicting
one beside the count, from the same pooled features, asks the backbone for features that measure how full a
bin is. The extra linear layer exists only in training; the artifact holds the count model alone.

The target is log(1 + value), standardised over the training rows (volumes span four orders of magnitude);
rows whose metadata lacks it are left out of that loss (NaN targets).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bintally.data.manifest import ManifestRow
from bintally.model.heads import CountModel

COLUMN = {"volume": "items_volume", "weight": "items_weight"}


class WithAuxiliary(nn.Module):
    """A count model plus a linear layer on its features: x -> (count logits [N, K], auxiliary value [N])."""

    def __init__(self, model: CountModel):
        super().__init__()
        self.counts = model
        self.aux = nn.Linear(model.backbone.num_features, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.counts.backbone(x)
        return self.counts.count_logits(features), self.aux(features)[:, 0]


def aux_targets(rows: Sequence[ManifestRow], target: str) -> list[float]:
    """Standardised log(1 + value) per row, NaN where the manifest has no value."""
    column = COLUMN[target]
    raw = [getattr(r, column) for r in rows]
    logs = [math.log1p(v) for v in raw if v is not None and v >= 0]
    if len(logs) < 2:
        raise ValueError(
            f"aux_target {target!r} needs the manifest's {column} column, and {len(logs)} of its {len(rows)} training "
            f"rows have it: rebuild the manifest with `bintally data manifest` (manifests written before the column lack it)"
        )
    mean = sum(logs) / len(logs)
    std = math.sqrt(sum((v - mean) ** 2 for v in logs) / len(logs)) or 1.0
    return [(math.log1p(v) - mean) / std if v is not None and v >= 0 else math.nan for v in raw]


def aux_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth L1 over the rows that have a target (zero, keeping the graph, where none has)."""
    known = ~torch.isnan(target)
    if not known.any():
        return predicted.sum() * 0.0
    return F.smooth_l1_loss(predicted[known], target[known].to(predicted.dtype))
