"""The typer app every command module registers on, and what all commands share.

Errors are reported one way. A bad option value is a usage error (typer's
message, exit status 2). A failure of the input or the environment (a missing
file, a bad artifact, a diverged run) prints `error: <why>` in one line without
a traceback (exit status 1). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Protocol, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bintally.errors import BintallyError
from bintally.model.predictor import Backend, Precision
from bintally.scoring.on_ray import RayConfig

app = typer.Typer(
    name="bintally",
    help="Count the objects in warehouse storage bins from a photo.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)

# Failures that are the input's or the environment's fault (TuneError, SpaceError, ArtifactError and
# ImageError are ValueErrors; bad weights, a diverged run, a failed export check are BintallyErrors).
CLEAR_ERRORS = (ValueError, OSError, BintallyError)

C = TypeVar("C", bound=BaseModel)

# Options several commands take, defined once.
EndpointOpt = Annotated[str | None, typer.Option("--endpoint-url", help="S3-compatible endpoint (default: AWS)")]
BackendOpt = Annotated[Backend, typer.Option(help="onnx (fast on CPU) or torch")]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(help="auto (int8 where the model has it and this CPU runs it fast: VNNI/AMX, or AVX2 for 7-bit weights) | fp32 | int8"),
]
MaxPixelsOpt = Annotated[int, typer.Option(help="refuse photos with more pixels (decompression bombs)")]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="[ADDRESS]",  # `--ray` alone is `--ray local` (cli.with_ray_default)
        help="score on Ray (the ray extra): alone, a Ray started here; auto, the cluster `ray start` made; HOST:PORT, that cluster",
    ),
]
RayActorsOpt = Annotated[int | None, typer.Option(min=1, help="with --ray: model actors [default: one per node, or per GPU]")]
RayActorCpusOpt = Annotated[float, typer.Option(min=0.01, help="with --ray: CPUs each model actor reserves")]


def ray_config(address: str | None, actors: int | None, cpus_per_actor: float) -> RayConfig | None:
    """`--ray`, `--ray-actors` and `--ray-actor-cpus` as a config; None without `--ray`."""
    if address is None and actors is not None:
        raise typer.BadParameter("needs --ray", param_hint="--ray-actors")
    return None if address is None else make_config(RayConfig, address=address, actors=actors, cpus_per_actor=cpus_per_actor)


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


class Update(Protocol):
    def __call__(self, done: int, total: int | None, note: str = "") -> None: ...


def every_s() -> float:
    """Seconds between progress lines when no terminal is attached (`BINTALLY_PROGRESS_EVERY_S`, default 30)."""
    return float(os.environ.get("BINTALLY_PROGRESS_EVERY_S", "30"))


class LogLines:
    """Progress for logs (nohup, CI, containers): a plain line at most every `every` seconds with items done of
    total, the rate since the pass began, and the time left. `done` going down starts a new pass (an epoch)."""

    def __init__(self, description: str, every: float, clock: Callable[[], float] = time.monotonic):
        self.description, self.every, self.clock = description, every, clock
        self.last_line = self.pass_start = clock()
        self.pass_base = self.last_done = 0  # items done when this pass began, and at the last update

    def __call__(self, done: int, total: int | None, note: str = "") -> None:
        now = self.clock()
        if done < self.last_done:
            self.pass_start, self.pass_base = now, done
        self.last_done = done
        if now - self.last_line < self.every:
            return
        self.last_line = now
        rate = (done - self.pass_base) / max(now - self.pass_start, 1e-9)
        left = f", {format_duration((total - done) / rate)} left" if total and rate > 0 else ""
        of = f"/{total:,}" if total else ""
        console.print(f"{self.description}: {done:,}{of} ({format_rate(rate)}{left}){f' {note}' if note else ''}", highlight=False)


def format_rate(per_second: float) -> str:
    """Items per second, or seconds per item below one a second (a 256 px training step here takes ~10 s)."""
    return f"{per_second:.1f}/s" if per_second >= 1 or per_second == 0 else f"{1 / per_second:.1f} s each"


def format_duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{s:02d}s"


@contextmanager
def progress(description: str) -> Iterator[Update]:
    """An updater `(done, total, note)`: a rich progress bar on a terminal, `LogLines` elsewhere."""
    if not console.is_terminal:
        yield LogLines(description, every_s())
        return
    columns = (
        f"[progress.description]{description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None, note="")

        def update(done: int, total: int | None, note: str = "") -> None:
            bar.update(task, completed=done, total=total, note=note)

        yield update
