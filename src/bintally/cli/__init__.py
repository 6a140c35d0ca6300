"""`bintally ...`: thin commands over the library. Each module registers its commands on `app`."""

from bintally.cli.app import app
from bintally.cli import data  # noqa: F401  (registers commands)
from bintally.cli import quickstart  # noqa: F401
from bintally.cli import reconcile  # noqa: F401
from bintally.cli import serve  # noqa: F401
from bintally.cli import train  # noqa: F401
from bintally.cli import tune  # noqa: F401

__all__ = ["app"]
