"""`bintally ...`: thin commands over the library. Each module registers its commands on `app`.

Serving, batch scoring, reconciling and data commands run on ONNX Runtime alone. The training commands
(train, evaluate, export, calibrate, tune, quickstart) need the `train` extra (torch, timm, optuna); a
serving install without it (`pip install bintally`, the serve container) simply does not have them.
"""

import importlib

from bintally.cli import (
    data,  # noqa: F401  (registers commands)
    reconcile,  # noqa: F401
    serve,  # noqa: F401
)
from bintally.cli.app import app

TRAINING_COMMANDS = ("train", "calibrate", "tune", "quickstart")
TRAINING_EXTRA = {"torch", "torchvision", "timm", "optuna"}

for module in TRAINING_COMMANDS:
    try:
        importlib.import_module(f"bintally.cli.{module}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAINING_EXTRA:
            raise

__all__ = ["app"]
