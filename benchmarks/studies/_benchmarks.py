"""Lets a study import the maintained benchmarks' helpers (`_results`, `_model`, `accuracy`, ...) from the folder
above: `import _benchmarks` first (a helper module, not a study)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
