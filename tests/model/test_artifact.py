"""The model artifact: saved, loaded with nothing else, same logits."""

from __future__ import annotations

import tarfile

import pytest
import torch

from bintally.model.artifact import ArtifactError, load_artifact, save_artifact, unpacked
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


def test_model_tar_gz_unpacks_to_its_one_artifact_and_bad_archives_are_refused(small_artifact, tmp_path):
    """Tried: model.tar.gz with the artifact in a subfolder; one with no artifact; one whose member climbs out of
    the folder (../). Must hold: the first loads; the others are ArtifactErrors saying why; nothing lands outside."""
    good = tmp_path / "good"
    good.mkdir()
    with tarfile.open(good / "model.tar.gz", "w:gz") as archive:
        archive.add(small_artifact, arcname="run")
    assert load_artifact(unpacked(str(good))).spec.name == "small-test"
    assert unpacked(small_artifact) == small_artifact  # an unpacked artifact is used as it is

    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as archive:
        archive.add(f"{small_artifact}/model.safetensors", arcname="weights.safetensors")
    with pytest.raises(ArtifactError, match="holds 0 model artifacts"):
        unpacked(str(empty))

    climbing = tmp_path / "climbing.tar.gz"
    with tarfile.open(climbing, "w:gz") as archive:
        archive.add(f"{small_artifact}/model.json", arcname="../escaped.json")
    with pytest.raises(ArtifactError, match="unpacks safely"):
        unpacked(str(climbing))
    assert not (tmp_path.parent / "escaped.json").exists()
