"""The typer app and console every command module registers on."""

import typer
from rich.console import Console

app = typer.Typer(
    name="bintally",
    help="Count the objects in warehouse storage bins from a photo.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)
