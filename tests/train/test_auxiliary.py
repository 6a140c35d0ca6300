"""The metadata auxiliary target: learnt beside the count in training, absent from the artifact."""

from __future__ import annotations

import math

import pytest
import torch

from bintally.data.manifest import read_manifest
from bintally.model.artifact import load_artifact
from bintally.train.auxiliary import aux_loss, aux_targets
from bintally.train.loop import train


def test_targets_are_standardised_logs_and_missing_values_are_nan(small_manifest):
    rows = read_manifest(str(small_manifest)).rows
    rows[0] = rows[0].model_copy(update={"items_volume": None})
    values = aux_targets(rows, "volume")
    known = [v for v in values if not math.isnan(v)]
    assert math.isnan(values[0]) and len(known) == len(rows) - 1
    assert sum(known) / len(known) == pytest.approx(0, abs=1e-9)
    assert math.sqrt(sum(v * v for v in known) / len(known)) == pytest.approx(1)
    # Ordered like the raw volumes: the standardisation is monotonic.
    raw = [r.items_volume for r in rows[1:]]
    assert sorted(range(len(raw)), key=lambda i: raw[i]) == sorted(range(len(raw)), key=lambda i: values[1:][i])  # type: ignore[arg-type,return-value]


def test_a_manifest_without_the_column_is_refused_with_what_to_do(small_manifest):
    rows = [r.model_copy(update={"items_weight": None}) for r in read_manifest(str(small_manifest)).rows]
    with pytest.raises(ValueError, match="needs the manifest's items_weight column.*rebuild the manifest"):
        aux_targets(rows, "weight")


def test_the_loss_ignores_rows_without_a_target():
    predicted = torch.tensor([0.0, 1.0, 5.0], requires_grad=True)
    loss = aux_loss(predicted, torch.tensor([0.5, float("nan"), 5.0]))
    assert loss.item() == pytest.approx(0.5 * 0.5**2 / 2)  # smooth L1 over the two known rows: (0.125 + 0) / 2
    assert aux_loss(predicted, torch.full((3,), float("nan"))).item() == 0


def kept_weights(run) -> dict[str, torch.Tensor]:
    artifact = load_artifact(str(run))
    artifact.torch_model()  # loads strictly: the artifact holds exactly the count model's tensors
    return artifact.state_dict()


def test_the_auxiliary_loss_shapes_the_backbone_and_leaves_no_trace_in_the_artifact(small_manifest, tiny, tmp_path):
    """Tried: the same seeded one-epoch full fine-tune with no auxiliary target, with the volume target at
    weight 0, and at weight 1. Must hold: weight 0 trains exactly the weights of no target (the extra layer
    changes nothing else); weight 1 trains different ones; every artifact holds the count model's tensors alone."""
    settings = {"epochs": 1, "limit_train": 32, "strategy": "full"}
    variants = {"none": {}, "zero": {"aux_target": "volume", "aux_weight": 0.0}, "one": {"aux_target": "volume", "aux_weight": 1.0}}
    runs = {}
    for name, extra in variants.items():
        runs[name] = kept_weights(train(str(small_manifest), str(tmp_path / name), tiny(**settings, **extra)).out_dir)
    assert runs["none"].keys() == runs["zero"].keys() == runs["one"].keys()
    assert all(torch.equal(runs["none"][k], runs["zero"][k]) for k in runs["none"])
    assert not all(torch.equal(runs["none"][k], runs["one"][k]) for k in runs["none"])


def test_a_run_with_an_auxiliary_target_resumes_to_the_same_weights(small_manifest, tiny, tmp_path):
    """Tried: two epochs in one go, and a run stopped after its first epoch then resumed. Must hold: the same kept
    weights (the extra layer's state travels in the checkpoint)."""
    cfg = tiny(epochs=2, limit_train=32, strategy="full", aux_target="weight", aux_weight=1.0, val_split=None)
    whole = train(str(small_manifest), str(tmp_path / "whole"), cfg)

    def stop(epoch: int, val: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(str(small_manifest), str(tmp_path / "split"), cfg, on_epoch=stop)
    resumed = train(str(small_manifest), str(tmp_path / "split"), cfg, resume=True)
    assert resumed.start_epoch == 1
    a, b = kept_weights(whole.out_dir), kept_weights(resumed.out_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
