"""Backbone registry and weight sources, on real bin photos."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from bintally.model.backbones import (
    PACKAGED,
    WeightsError,
    create_backbone,
    create_imagenet_model,
    packaged_weights_path,
    remap_by_order,
)
from bintally.model.preprocess import Preprocess, prepare_batch

# ImageNet classes 0-397 are animals; photos of bins must not look like animals to a correctly loaded model.
FIRST_ARTEFACT_CLASS = 398


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_packaged_weights_map_strictly(name):
    """Each packaged state dict is renamed by order onto timm's model: same tensors, no key missing or left over."""
    model = create_imagenet_model(name, "none")
    state = torch.load(packaged_weights_path(name), map_location="cpu", weights_only=True)
    mapped = remap_by_order(state, model.state_dict())
    result = model.load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.state_dict()["conv_stem.weight"], next(iter(state.values())))


def test_packaged_model_sees_man_made_things_in_bins(bin_photos):
    """Packaged Lite0 on real bin photos: deterministic, confident, artefact classes; a random network is not."""
    x = torch.from_numpy(prepare_batch(bin_photos, Preprocess()))
    with torch.no_grad():
        probs = create_imagenet_model("tf_efficientnet_lite0").eval()(x).softmax(-1)
        again = create_imagenet_model("tf_efficientnet_lite0").eval()(x).softmax(-1)
        torch.manual_seed(0)
        random_probs = create_imagenet_model("tf_efficientnet_lite0", "none").eval()(x).softmax(-1)
    assert torch.equal(probs, again)
    assert (probs.argmax(-1) >= FIRST_ARTEFACT_CLASS).all()
    assert probs.max(-1).values.mean() > 0.1 > random_probs.max(-1).values.mean()


def test_backbone_features_and_file_weights(tmp_path):
    """A backbone gives pooled features; a state dict saved to a file loads back into the same architecture."""
    backbone = create_backbone("resnet18", "none")
    assert backbone(torch.zeros(2, 3, 64, 64)).shape == (2, backbone.num_features) == (2, 512)
    full = create_imagenet_model("resnet18", "none")
    path = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), path)
    loaded = create_backbone("resnet18", str(path))
    assert torch.equal(loaded.body.conv1.weight, full.conv1.weight)


def test_wrong_file_weights_are_refused(tmp_path):
    """A ResNet-18 state dict does not load into a ResNet-34: clear error, not a silent partial load."""
    path = tmp_path / "resnet18.pth"
    torch.save(create_imagenet_model("resnet18", "none").state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit"):
        create_backbone("resnet34", str(path))
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("resnet18", str(tmp_path / "missing.pth"))


def test_imagenet_offline_names_the_offline_choices(monkeypatch):
    """With the network unreachable, --weights imagenet fails with a message that names packaged, none and PATH."""

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    with pytest.raises(WeightsError, match="offline choices: --weights packaged .* --weights none, or --weights PATH"):
        create_backbone("resnet18", "imagenet")


def test_imagenet_loads_torchvisions_weights_through_the_hub_cache(monkeypatch, tmp_path):
    """--weights imagenet for a torchvision name goes through torch.hub: a file already in its cache (an online
    user's second run) is what the model gets, exactly, with no network touched."""
    from torchvision.models import ResNet18_Weights

    expected = create_imagenet_model("resnet18", "none").state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(expected, cache / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # re-read TORCH_HOME
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("the cache was not used"))
    loaded = create_imagenet_model("resnet18", "imagenet").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


def test_unknown_names_are_refused():
    """Unknown backbones, and packaged weights for a backbone that has none, are clear errors."""
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("no_such_net", "none")
    with pytest.raises(WeightsError, match="no packaged weights for 'resnet34'"):
        create_backbone("resnet34", "packaged")
