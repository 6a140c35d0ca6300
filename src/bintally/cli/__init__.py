"""`bintally ...`: thin commands over the library. Each module registers its commands on `app`.

Serving, batch scoring, reconciling and data commands run on ONNX Runtime alone. The training commands
(train, evaluate, export, calibrate, tune, quickstart) need the `train` extra (torch, timm, optuna); a
serving install without it (`pip install bintally`, the serve container) simply does not have them.
"""

import importlib
import sys

from bintally.cli import (
    data,  # noqa: F401  (registers commands)
    reconcile,  # noqa: F401
    serve,  # noqa: F401
)
from bintally.cli.app import app
from bintally.scoring.on_ray import LOCAL_RAY

TRAINING_COMMANDS = ("train", "calibrate", "tune", "quickstart")
TRAINING_EXTRA = {"torch", "torchvision", "timm", "optuna"}

for module in TRAINING_COMMANDS:
    try:
        importlib.import_module(f"bintally.cli.{module}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAINING_EXTRA:
            raise


def with_ray_default(args: list[str]) -> list[str]:
    """`--ray` with no address (last, or followed by another option) means `--ray local`: typer has no
    options whose value may be left out."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--ray" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, LOCAL_RAY)
    return out


def main() -> None:
    """The `bintally` command."""
    app(args=with_ray_default(sys.argv[1:]), prog_name="bintally")


__all__ = ["app", "main"]
