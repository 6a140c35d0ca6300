"""`bintally ...`: thin commands over the library. Each module registers its commands on `app`."""

from bintally.cli.app import app
from bintally.cli import data  # noqa: F401  (registers commands)

__all__ = ["app"]
