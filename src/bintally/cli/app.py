"""The typer app every command module registers on, and what all commands share.

Errors are reported one way. A bad option value is a usage error (typer's
message, exit status 2). A failure of the input or the environment (a missing
file, a bad artifact, a diverged run) prints `error: <why>` in one line without
a traceback (exit status 1). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

from bintally.model.backbones import WeightsError
from bintally.model.export import ExportMismatch
from bintally.model.predictor import Backend
from bintally.train.loop import TrainingDiverged

app = typer.Typer(
    name="bintally",
    help="Count the objects in warehouse storage bins from a photo.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)

# Failures that are the input's or the environment's fault (TuneError, SpaceError, ArtifactError and
# ImageError are ValueErrors).
CLEAR_ERRORS = (ValueError, OSError, WeightsError, TrainingDiverged, ExportMismatch)

C = TypeVar("C", bound=BaseModel)

# Options several commands take, defined once.
EndpointOpt = Annotated[str | None, typer.Option("--endpoint-url", help="S3-compatible endpoint (default: AWS)")]
BackendOpt = Annotated[Backend, typer.Option(help="onnx (fast on CPU) or torch")]
MaxPixelsOpt = Annotated[int, typer.Option(help="refuse photos with more pixels (decompression bombs)")]


@contextmanager
def reported_errors() -> Iterator[None]:
    try:
        yield
    except CLEAR_ERRORS as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc


def make_config(kind: type[C], /, **fields: Any) -> C:
    """A typed config from the options; a value pydantic refuses is a usage error."""
    try:
        return kind(**fields)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
