"""The machine description benchmarks print."""

from __future__ import annotations

from pathlib import Path

from bintally import hardware as hw


def test_the_cpu_is_named_with_its_speed_flags_as_proc_cpuinfo_lists_them():
    machine = hw.hardware()
    flags = set(Path("/proc/cpuinfo").read_text().split("\n\n", 1)[0].split("flags", 1)[1].split("\n", 1)[0].split())
    assert machine.flags == [f for f in hw.SPEED_FLAGS if f in flags]
    assert machine.cpu in Path("/proc/cpuinfo").read_text() and machine.cores >= 1
    assert machine.cpu in machine.describe() and f"{machine.cores} cores" in machine.describe()
