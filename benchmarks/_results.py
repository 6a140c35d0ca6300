"""What every benchmark result file carries (a helper module, not a benchmark)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bintally.hardware import hardware

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(out: Path, result: dict, started: float, script: str) -> None:
    """`result` as JSON at `out`, with the hardware it ran on, the seconds since `started` and the command."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stamped = result | {
        "hardware": hardware().describe(),
        "seconds": time.monotonic() - started,
        "command": " ".join(["python", f"benchmarks/{script}", *sys.argv[1:]]),
    }
    out.write_text(json.dumps(stamped, indent=2))
