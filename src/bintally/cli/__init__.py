"""`bintally ...`: thin commands over the library. Each module registers its commands on `app`."""

from bintally.cli import (
    data,  # noqa: F401  (registers commands)
    quickstart,  # noqa: F401
    reconcile,  # noqa: F401
    serve,  # noqa: F401
    train,  # noqa: F401
    tune,  # noqa: F401
)
from bintally.cli.app import app

__all__ = ["app"]
