"""What machine this is: the CPU's model and the instruction sets that decide speed, and any CUDA device.

CPUs differ between machines of the same kind (an AMD EPYC with AVX2 only; an Intel
Xeon with AVX-512, VNNI and AMX), so every benchmark names the hardware it ran on,
and training picks its precision from what the CPU has (`bf16_is_native`).

`BINTALLY_CPU_FLAGS` (a list of flags) hides the other speed flags from bintally, as
`benchmarks/avx2_only.sh` hides them from every library's cpuid, so that a run there
decides and describes itself as on an AVX2-only CPU.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

from pydantic import BaseModel

# The flags (as /proc/cpuinfo names them) that change how fast bintally's models run.
SPEED_FLAGS = ("avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
INT8_FLAGS = {"avx_vnni", "avx512_vnni", "amx_int8"}  # int8 dot products in one instruction


class Hardware(BaseModel):
    cpu: str
    cores: int
    flags: list[str]  # the SPEED_FLAGS this CPU has
    hidden: list[str] = []  # the SPEED_FLAGS it has that BINTALLY_CPU_FLAGS hides
    gpu: str | None = None

    def describe(self) -> str:
        isa = ", ".join(f.upper() for f in self.flags) or "no AVX2"
        if self.hidden:
            isa += f"; its {', '.join(f.upper() for f in self.hidden)} hidden"
        cpu = f"{self.cpu}, {self.cores} cores ({isa})"
        return f"{self.gpu} + {cpu}" if self.gpu else f"{cpu}, no GPU"


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    first = path.read_text().split("\n\n", 1)[0]
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines())}


@cache
def cpu() -> Hardware:
    """The CPU alone (imports no torch: the serving install has none)."""
    info = _cpuinfo()
    flags = [f for f in SPEED_FLAGS if f in info.get("flags", "").split()]
    shown = os.environ.get("BINTALLY_CPU_FLAGS", " ".join(flags)).split()
    return Hardware(
        cpu=info.get("model name") or platform.processor() or platform.machine(),
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        flags=[f for f in flags if f in shown],
        hidden=[f for f in flags if f not in shown],
    )


@cache
def hardware() -> Hardware:
    """The CPU and the first CUDA device, if torch sees one."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return cpu().model_copy(update={"gpu": gpu})


def bf16_is_native() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX or AVX-512 BF16); elsewhere bf16 autocast is 5-20x slower."""
    return bool({"amx_bf16", "avx512_bf16"} & set(cpu().flags))


def int8_pays(weight_bits: int) -> bool:
    """Whether an int8 graph whose weights use `weight_bits` runs faster than fp32 here and counts as its check did.

    With VNNI or AMX any graph does (2.2-2.4x fp32 at batch 32 on the default model). With AVX2 alone ONNX Runtime
    sums pairs of uint8 x int8 products in 16 bits, which full-range weights overflow (that graph kept 79% of
    fp32's counts there against 93% with VNNI); 7-bit weights cannot overflow, count the same as with VNNI and
    ran 1.5x fp32 (docs/serving.md, measured under benchmarks/avx2_only.sh)."""
    flags = set(cpu().flags)
    return bool(INT8_FLAGS & flags) or (weight_bits <= 7 and "avx2" in flags)
