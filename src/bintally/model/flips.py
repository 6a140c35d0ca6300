"""Flip test-time augmentation: the network's logits averaged over the photo and its flipped views.

Chosen on validation (`benchmarks/studies/tta.py`), set on an artifact by `bintally calibrate --flips`, and then part
of the model itself (`ModelArtifact.torch_model`, so the ONNX export, every predictor and evaluation see it).
Each flip is one more forward pass per photo.
"""

from __future__ import annotations

import torch

from bintally.model.spec import Flip

FLIP_DIMS: dict[str, tuple[int, ...]] = {"left-right": (3,), "top-bottom": (2,)}  # of an [N, C, H, W] batch


class FlipAveraged(torch.nn.Module):
    """[N, 3, S, S] -> [N, K]: the mean of `model`'s logits over the photo and each of its `flips`."""

    def __init__(self, model: torch.nn.Module, flips: list[Flip]):
        super().__init__()
        self.model, self.flips = model, list(flips)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = torch.cat([x, *(x.flip(FLIP_DIMS[f]) for f in self.flips)])  # one batch: one pass through the network
        logits = self.model(views)
        return logits.reshape(1 + len(self.flips), x.shape[0], logits.shape[-1]).mean(dim=0)
