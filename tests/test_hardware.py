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


def test_bintally_cpu_flags_hides_the_other_speed_flags_and_says_so(monkeypatch):
    """Tried: BINTALLY_CPU_FLAGS=avx2 (what benchmarks/avx2_only.sh sets) on this CPU. Must hold: only AVX2 of its
    speed flags is shown and used; the rest are listed as hidden and named in the description."""
    real = hw.cpu()
    monkeypatch.setenv("BINTALLY_CPU_FLAGS", "avx2")
    hw.cpu.cache_clear()
    try:
        limited = hw.cpu()
    finally:
        hw.cpu.cache_clear()
    assert limited.flags == [f for f in real.flags if f == "avx2"]
    assert limited.hidden == [f for f in real.flags if f != "avx2"]
    assert all(f.upper() in limited.describe() for f in limited.hidden) and ("hidden" in limited.describe()) is bool(limited.hidden)
