"""Flip test-time augmentation as part of the model: by hand, through the artifact, ONNX and the predictors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from bintally.model.artifact import load_artifact, write_spec
from bintally.model.export import export_onnx
from bintally.model.predictor import load_predictor
from bintally.model.preprocess import prepare_batch


@pytest.fixture
def flipped_artifact(small_artifact, tmp_path) -> str:
    """The shared small artifact with top-bottom flip averaging set."""
    out = str(tmp_path / "model")
    shutil.copytree(small_artifact, out)
    write_spec(out, load_artifact(out).spec.model_copy(update={"flips": ["top-bottom"]}))
    return out


def test_flip_averaged_logits_are_the_mean_over_the_views(flipped_artifact, bin_photos):
    """On 3 real photos: the artifact's model gives the mean of the bare network's logits on each photo and on
    the photo upside down; the bare network (flips=[]) differs from it."""
    artifact = load_artifact(flipped_artifact)
    x = torch.from_numpy(prepare_batch(bin_photos[:3], artifact.spec.preprocess))
    bare = artifact.torch_model(flips=[])
    with torch.no_grad():
        want = (bare(x) + bare(x.flip(2))) / 2
        got = artifact.torch_model()(x)
        assert torch.allclose(got, want, atol=1e-5)
        assert not torch.allclose(bare(x), want, atol=1e-4)


def test_onnx_and_both_predictors_average_the_flips(flipped_artifact, bin_photos):
    """The ONNX export of a flip-averaged artifact carries the averaging in its graph (checked against PyTorch on
    real photos with a dynamic batch), and the ONNX and PyTorch predictors answer the same averaged logits."""
    artifact = load_artifact(flipped_artifact)
    export_onnx(artifact, f"{flipped_artifact}/model.onnx", bin_photos)
    batch = prepare_batch(bin_photos[:5], artifact.spec.preprocess)
    with torch.no_grad():
        want = artifact.torch_model()(torch.from_numpy(batch)).numpy() / artifact.spec.temperature
    for backend in ("onnx", "torch"):
        assert np.abs(load_predictor(flipped_artifact, backend).logits(batch) - want).max() < 1e-3, backend
