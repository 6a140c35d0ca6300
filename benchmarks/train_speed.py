"""Training speed on this machine: Lite0 images/s for fp32 and bf16 autocast, with and without channels_last.

    python benchmarks/train_speed.py                       # 224 px, batch 32, median of 5 timings of 5 steps each,
                                                           # the four settings timed in turn within each repeat
    python benchmarks/train_speed.py --image-size 128 --steps 10

Times full training steps (forward, loss, backward, AdamW) of the packaged EfficientNet-Lite0 with an ordinal
head, on random input: the model's compute alone, without JPEG decoding. Prints one table naming the CPU and
its relevant instruction sets, says which precision `--precision auto` picks here, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bintally.hardware import hardware
from bintally.model.heads import create_model
from bintally.train.precision import choose_precision, step_timer

RESULTS = Path(__file__).resolve().parent / "results"


def training_step(bf16: bool, channels_last: bool, size: int, batch: int) -> Callable[[], None]:
    """One full training step of a fresh model in this setting, warmed up (allocations, oneDNN primitives)."""
    torch.manual_seed(0)
    model = create_model("tf_efficientnet_lite0", "ordinal", [1, 2, 3, 4, 5], weights="packaged").train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=memory_format)
    target = torch.randint(0, 5, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
        loss = torch.nn.functional.cross_entropy(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    return step


def images_per_second(settings: list[tuple[bool, bool]], size: int, batch: int, steps: int, repeats: int) -> list[float]:
    """Median images/s per setting, the settings timed in turn within each repeat (side by side: noise hits all)."""
    steppers = [training_step(bf16, channels_last, size, batch) for bf16, channels_last in settings]
    rates: list[list[float]] = [[] for _ in settings]
    for _ in range(repeats):
        for step, timed in zip(steppers, rates):
            started = time.perf_counter()
            for _ in range(steps):
                step()
            timed.append(steps * batch / (time.perf_counter() - started))
    return [statistics.median(r) for r in rates]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="default: benchmarks/results/train-speed-<size>px.json")
    args = parser.parse_args()

    machine = hardware()
    settings = [(bf16, channels_last) for bf16 in (False, True) for channels_last in (False, True)]
    rates = images_per_second(settings, args.image_size, args.batch_size, args.steps, args.repeats)
    rows = [
        {"precision": "bf16" if bf16 else "fp32", "channels_last": channels_last, "images_per_s": rate}
        for (bf16, channels_last), rate in zip(settings, rates)
    ]
    fastest = max(rows, key=lambda r: r["images_per_s"])
    model = create_model("tf_efficientnet_lite0", "ordinal", [1, 2, 3, 4, 5]).to(memory_format=torch.channels_last)
    choice = choose_precision("auto", torch.device("cpu"), lambda: step_timer(model, args.batch_size, args.image_size, torch.channels_last))
    auto = choice.name
    print(f"Lite0 training at {args.image_size} px, batch {args.batch_size}, on {machine.describe()} (torch {torch.__version__})")
    print("| precision | channels_last | images/s | vs fp32 |")
    print("| --- | --- | ---: | ---: |")
    base = rows[0]["images_per_s"]
    for r in rows:
        print(f"| {r['precision']} | {'yes' if r['channels_last'] else 'no'} | {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f}x |")
    print(f"fastest: {fastest['precision']}, channels_last {fastest['channels_last']}")
    print(f"`--precision auto` picks {auto} here ({choice.reason})")
    out = args.json or RESULTS / f"train-speed-{args.image_size}px.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = vars(args) | {"json": str(out)}
    body = {"hardware": machine.model_dump(), "settings": settings, "rows": rows, "auto": auto, "auto_reason": choice.reason}
    out.write_text(json.dumps(body, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
