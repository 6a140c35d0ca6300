"""The machine description benchmarks print, and the precision `--precision auto` picks from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bintally import hardware as hw
from bintally.train.loop import uses_bf16


def test_the_cpu_is_named_with_its_speed_flags_as_proc_cpuinfo_lists_them():
    machine = hw.hardware()
    flags = set(Path("/proc/cpuinfo").read_text().split("\n\n", 1)[0].split("flags", 1)[1].split("\n", 1)[0].split())
    assert machine.flags == [f for f in hw.SPEED_FLAGS if f in flags]
    assert machine.cpu in Path("/proc/cpuinfo").read_text() and machine.cores >= 1
    assert machine.cpu in machine.describe() and f"{machine.cores} cores" in machine.describe()


@pytest.mark.parametrize("flags, native", [(["avx2"], False), (["avx2", "avx512f", "amx_bf16"], True), (["avx512_bf16"], True)])
def test_auto_precision_uses_bf16_on_cuda_and_on_cpus_with_native_bf16_only(monkeypatch, flags, native):
    """Tried: CPUs with and without native bf16 (AMX or AVX-512 BF16). Must hold: auto picks bf16 exactly where it
    is native or on CUDA; an explicit precision is always honoured."""
    monkeypatch.setattr(hw, "cpu", lambda: hw.Hardware(cpu="test CPU", cores=2, flags=flags))
    assert uses_bf16("auto", torch.device("cpu")) is native
    assert uses_bf16("auto", torch.device("cuda", 0)) is True
    assert uses_bf16("fp32", torch.device("cuda", 0)) is False and uses_bf16("bf16", torch.device("cpu")) is True
