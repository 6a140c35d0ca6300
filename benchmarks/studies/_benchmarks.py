"""Lets a study import the maintained benchmarks' helpers (`_results`, `_model`, `accuracy`, ...) from the folder
above: `import _benchmarks` first (a helper module, not a study). Also the arguments the studies that compare
models share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))


def models_on_a_split(description: str) -> argparse.ArgumentParser:
    """The arguments of a study that scores several models on one split of a manifest: MANIFEST MODEL [MODEL...]
    [--split val] [--device auto]; a study adds its own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--split", default="val")
    parser.add_argument("--device", default="auto")
    return parser
