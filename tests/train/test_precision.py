"""`--precision auto`: bf16 where it is known or measured to be faster, float32 elsewhere."""

from __future__ import annotations

import json

import pytest
import torch

from bintally import hardware as hw
from bintally.model.heads import create_model
from bintally.train.loop import train
from bintally.train.precision import choose_precision, measure, step_timer


def cpu_with(monkeypatch, flags: list[str]) -> None:
    monkeypatch.setattr(hw, "cpu", lambda: hw.Hardware(cpu="test CPU", cores=2, flags=flags))


def timer_from(seconds: dict[bool, float]):
    """A step timer whose bf16 and fp32 steps take fixed times, counting its calls."""
    calls = []

    def timer(bf16: bool) -> float:
        calls.append(bf16)
        return seconds[bf16]

    return (lambda: (timer, 16)), calls


def never_timed():
    raise AssertionError("nothing needs measuring here")


def test_an_explicit_precision_is_honoured_without_measuring():
    for device in (torch.device("cpu"), torch.device("cuda", 0)):
        assert choose_precision("fp32", device, never_timed).bf16 is False
        assert choose_precision("bf16", device, never_timed).bf16 is True


def test_auto_is_float32_on_a_cpu_without_native_bf16_and_bf16_on_cuda_that_has_it(monkeypatch):
    cpu_with(monkeypatch, ["avx2", "avx512f"])
    choice = choose_precision("auto", torch.device("cpu"), never_timed)
    assert choice.name == "fp32" and "no native bf16" in choice.reason
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert choose_precision("auto", torch.device("cuda", 0), never_timed).name == "bf16"


@pytest.mark.parametrize("flags", [["avx2", "avx512f", "avx512_bf16"], ["avx2", "amx_bf16"]])
@pytest.mark.parametrize("fp32_s, bf16_s, picked", [(2.0, 1.0, "bf16"), (1.0, 1.1, "fp32")])
def test_auto_on_a_cpu_with_native_bf16_picks_the_precision_its_steps_measure_faster(monkeypatch, flags, fp32_s, bf16_s, picked):
    """Tried: CPUs with AVX-512 BF16 or AMX where bf16 steps are faster, and where they are slower (as measured on
    an Intel Xeon without AMX). Must hold: the faster one is picked, the reason gives both rates, each precision
    is warmed up once and then timed in alternation."""
    cpu_with(monkeypatch, flags)
    timer, calls = timer_from({False: fp32_s, True: bf16_s})
    choice = choose_precision("auto", torch.device("cpu"), timer)
    assert choice.name == picked
    assert choice.images_per_s == {"fp32": 16 / fp32_s, "bf16": 16 / bf16_s}
    assert f"bf16 {16 / bf16_s:.1f} images/s, fp32 {16 / fp32_s:.1f}" in choice.reason
    assert calls == [False, True] * 4


def test_one_lucky_step_does_not_decide_it():
    """Tried: fp32 steps that are mostly slow with one fast outlier, bf16 steady in between (as seen on a
    2-core AMX Xeon: fp32 11-21 images/s, bf16 19-20). Must hold: the typical step decides, bf16 is faster."""
    steps = {False: iter([1.0, 0.5, 2.0, 2.0]), True: iter([1.0, 1.2, 1.2, 1.2])}  # first of each: the warm-up
    rates = measure(lambda bf16: next(steps[bf16]), 16)
    assert rates == {"fp32": 16 / 2.0, "bf16": 16 / 1.2}


def test_measuring_times_real_steps_on_a_copy_and_leaves_the_model_untouched():
    """Tried: real forward-backward steps of Lite0 in both precisions. Must hold: both rates are positive and the
    model's weights and BatchNorm statistics are exactly as before (the steps ran on a copy)."""
    model = create_model("tf_efficientnet_lite0", "ordinal", [1, 2, 3]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rates = measure(*step_timer(model, 4, 32, torch.channels_last))
    assert rates["fp32"] > 0 and rates["bf16"] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_a_run_records_the_precision_it_trained_in(small_manifest, tiny, tmp_path, monkeypatch):
    """Tried: `auto` on a CPU said to have AVX-512 BF16, the bf16 steps made to measure faster. Must hold: the run
    trains in bf16 and says so, in its result (with the measured reason) and in every epoch of history.json."""
    cpu_with(monkeypatch, ["avx2", "avx512f", "avx512_bf16"])
    monkeypatch.setattr("bintally.train.precision.measure", lambda timer, batch: {"fp32": 1.0, "bf16": 2.0})
    out = tmp_path / "run"
    result = train(str(small_manifest), str(out), tiny(precision="auto", epochs=1, limit_train=32, strategy="head"))
    assert result.precision == "bf16" and result.precision_reason.startswith("measured on this CPU")
    assert [e["precision"] for e in json.loads((out / "history.json").read_text())] == ["bf16"]
