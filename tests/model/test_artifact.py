"""The model artifact: saved, loaded with nothing else, same logits."""

from __future__ import annotations

import os
import shutil
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
    with unpacked(str(good)) as artifact:
        assert load_artifact(artifact).spec.name == "small-test"
    with unpacked(small_artifact) as artifact:
        assert artifact == small_artifact  # an unpacked artifact is used as it is

    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as archive:
        archive.add(f"{small_artifact}/model.safetensors", arcname="weights.safetensors")
    with pytest.raises(ArtifactError, match="holds 0 model artifacts"), unpacked(str(empty)):
        pass

    climbing = tmp_path / "climbing.tar.gz"
    with tarfile.open(climbing, "w:gz") as archive:
        archive.add(f"{small_artifact}/model.json", arcname="../escaped.json")
    with pytest.raises(ArtifactError, match="unpacks safely"), unpacked(str(climbing)):
        pass
    assert not (tmp_path.parent / "escaped.json").exists()


@pytest.mark.parametrize("layout", ["", "run", "opt/ml/run"], ids=["files-at-the-top", "one-subfolder", "nested"])
def test_the_folders_sagemaker_unpacks_a_model_tar_gz_into_are_artifacts(small_artifact, tmp_path, layout):
    """SageMaker hosting unpacks model.tar.gz into /opt/ml/model itself. Tried: the artifact's files as a tar's
    members would leave them there (at the top, in a subfolder, deeper), as a directory tree; then a second artifact
    beside it. Must hold: each is the artifact; with two below the top, which one is meant is not guessed."""
    model_dir = tmp_path / "opt" / "ml" / "model"
    shutil.copytree(small_artifact, model_dir / layout)
    with unpacked(str(model_dir)) as artifact:
        assert load_artifact(artifact).spec.name == "small-test"
    shutil.copytree(small_artifact, model_dir / "another")
    if layout:
        with pytest.raises(ArtifactError, match="holds 2 model artifacts"), unpacked(str(model_dir)):
            pass


def test_an_archive_is_unpacked_for_the_block_only_and_a_tar_bomb_is_refused(small_artifact, tmp_path):
    """Tried: a model.tar.gz used in a block; then one of 3 MB of zeros (a few KB packed) under a 1 MB cap. Must
    hold: the temporary folder is gone after the block; the bomb is refused before anything is written."""
    packed = tmp_path / "model.tar.gz"
    with tarfile.open(packed, "w:gz") as archive:
        archive.add(small_artifact, arcname="run")
    with unpacked(str(packed)) as artifact:
        assert load_artifact(artifact).spec.name == "small-test"
    assert not os.path.exists(artifact)

    zeros = tmp_path / "zeros.bin"
    zeros.write_bytes(bytes(3 * 2**20))
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as archive:
        archive.add(small_artifact, arcname="run")
        archive.add(zeros, arcname="run/padding.bin")
    size = os.path.getsize(f"{small_artifact}/model.safetensors")
    with pytest.raises(ArtifactError, match="unpacks to .* bytes, more than the"), unpacked(str(bomb), max_bytes=size + 2**20):
        pass


def test_a_1_to_5_artifact_from_before_open_classes_loads_and_answers_as_before(exported, bin_photos):
    """model.json written before `open_top` existed (the key absent): it loads as closed classes 1-5 and answers
    counts 1-5 with probabilities keyed "1".."5", never `at_least`, the same as with the key written."""
    import json
    from pathlib import Path

    from bintally.scoring.model import load_model

    spec_file = Path(exported, "model.json")
    spec = json.loads(spec_file.read_text())
    spec.pop("open_top")
    spec_file.write_text(json.dumps(spec))
    artifact = load_artifact(exported)
    assert not artifact.spec.open_top and artifact.spec.count_classes.labels == ["1", "2", "3", "4", "5"]
    predictor = load_model(exported, "onnx", "fp32")
    for logits in predictor.logits(prepare_batch(bin_photos[:3], artifact.spec.preprocess)):
        answer = predictor.score(logits)
        assert answer.count in {1, 2, 3, 4, 5} and not answer.at_least and list(answer.probabilities) == ["1", "2", "3", "4", "5"]
