"""The model artifact: saved, loaded with nothing else, same logits."""

from __future__ import annotations

import pytest
import torch

from bintally.model.artifact import ArtifactError, load_artifact, save_artifact
from bintally.model.preprocess import prepare_batch


def test_artifact_round_trip_gives_same_logits(small_artifact, bin_photos, tmp_path):
    """Load an artifact, save it again elsewhere, load that: the spec survives and logits on real photos are identical."""
    artifact = load_artifact(small_artifact)
    assert artifact.spec.classes == [1, 2, 3, 4, 5] and artifact.spec.preprocess.size == 96
    assert artifact.onnx_path is None
    x = torch.from_numpy(prepare_batch(bin_photos, artifact.spec.preprocess))
    model = artifact.torch_model()
    assert not model.training
    copy = str(tmp_path / "copy")
    save_artifact(copy, model, artifact.spec)
    with torch.no_grad():
        assert torch.equal(model(x), load_artifact(copy).torch_model()(x))
    assert load_artifact(copy).spec == artifact.spec


def test_not_an_artifact_is_a_clear_error(tmp_path):
    """An empty folder, a folder without weights, and a broken model.json are refused with the reason."""
    with pytest.raises(ArtifactError, match="no model.json"):
        load_artifact(str(tmp_path))
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(ArtifactError, match="no model.safetensors"):
        load_artifact(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ArtifactError, match="not a valid model spec"):
        load_artifact(str(tmp_path))
