"""Which precision a run trains in: bf16 autocast or float32.

`--precision auto` measures where it cannot know. CPUs that compute bf16 natively differ in whether it pays:
on a 2-core AMD EPYC with AVX-512 BF16, Lite0 trained 1.27x faster in bf16 than in float32 (both channels_last);
on a 2-core Intel Xeon with AVX-512 BF16 and no AMX, 0.90x; on one with AMX, level (1.01-1.13x;
benchmarks/results/train-speed-224px*.json). So on such a CPU a few forward-backward steps of the run's own model
are timed in each precision before the first epoch, on a copy (the run's weights and BatchNorm statistics are
untouched), and the faster one is used.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bintally.hardware import bf16_is_native

# Each precision is timed this often, alternating, after one untimed warm-up step each. Three rounds and their
# median: on a 2-core AMX Xeon fp32 steps ranged 11-21 images/s at batch 16 while bf16 held 19-20, so the
# fastest of two rounds picked fp32 although its typical step was the slower.
TIMED_ROUNDS = 3
MAX_TIMED_BATCH = 32  # the run's own batch up to this: per-image speed changes with batch size


@dataclass(frozen=True)
class PrecisionChoice:
    bf16: bool
    reason: str
    images_per_s: dict[str, float] | None = None  # {"fp32": ..., "bf16": ...} where it was measured

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"


StepTimer = Callable[[bool], float]  # bf16? -> seconds for one forward-backward step


def step_timer(model: torch.nn.Module, batch: int, size: int, memory_format: torch.memory_format) -> tuple[StepTimer, int]:
    """A timer of forward-backward steps on a copy of `model` (random input: speed does not depend on content)."""
    probe = copy.deepcopy(model).train()
    device = next(probe.parameters()).device
    batch = max(2, min(batch, MAX_TIMED_BATCH))  # BatchNorm needs two images
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory_format)

    def seconds(bf16: bool) -> float:
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = probe(x).float()
        out.mean().backward()
        probe.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    return seconds, batch


def measure(timer: StepTimer, batch: int) -> dict[str, float]:
    """Images/s of each precision: the median of TIMED_ROUNDS steps, the two precisions alternating (a busy
    machine slows both alike)."""
    for bf16 in (False, True):
        timer(bf16)  # warm-up: first-call allocations and kernel selection
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(TIMED_ROUNDS):
        for bf16 in (False, True):
            seconds[bf16].append(timer(bf16))
    return {"fp32": batch / statistics.median(seconds[False]), "bf16": batch / statistics.median(seconds[True])}


def choose_precision(precision: str, device: torch.device, timer: Callable[[], tuple[StepTimer, int]]) -> PrecisionChoice:
    """`precision` as asked; for "auto": bf16 on CUDA where supported, float32 on CPUs without native bf16 (emulated
    it is 5-20x slower), and on CPUs with it whichever `timer`'s steps measure faster."""
    if precision != "auto":
        return PrecisionChoice(precision == "bf16", "asked for")
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return PrecisionChoice(supported, "CUDA device with bf16" if supported else "CUDA device without bf16")
    if not bf16_is_native():
        return PrecisionChoice(False, "this CPU has no native bf16 (AMX or AVX-512 BF16)")
    rates = measure(*timer())
    faster = rates["bf16"] > rates["fp32"]
    reason = f"measured on this CPU: bf16 {rates['bf16']:.1f} images/s, fp32 {rates['fp32']:.1f}"
    return PrecisionChoice(faster, reason, rates)
