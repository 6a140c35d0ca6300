"""The README's commands run as written: every option of every `bintally` command it shows exists, and the cheap
ones (the manifest and its statistics, on the real sample) run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bintally.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
GROUPS = {"data"}  # commands with subcommands: `bintally data manifest ...`


def readme_commands() -> list[list[str]]:
    """Each `bintally ...` line of the README's bash blocks, as arguments (comments and a trailing & dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.DOTALL)
    lines = [line.split("  #")[0].strip().removesuffix("&").strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("bintally ")]


def command_of(args: list[str]) -> list[str]:
    return args[:2] if args[0] in GROUPS else args[:1]


def test_the_readme_shows_every_stage():
    shown = {" ".join(command_of(args)) for args in readme_commands()}
    assert {"data manifest", "train", "evaluate", "export", "serve", "predict", "reconcile", "calibrate", "tune"} <= shown


@pytest.mark.parametrize("args", readme_commands(), ids=lambda args: " ".join(args)[:60])
def test_every_option_the_readme_uses_exists(args):
    command = command_of(args)
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.output), f"bintally {' '.join(command)} has no {option}"


def test_the_cheap_readme_commands_run(abid_root, tmp_path, monkeypatch):
    """`data manifest` and `data stats` as the README writes them for the sample, on the real sample (from a folder
    where ../shared/abid is the sample)."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (tmp_path / "a" / "shared").mkdir()
    (tmp_path / "a" / "shared" / "abid").symlink_to(abid_root)
    monkeypatch.chdir(work)
    for args in readme_commands():
        on_the_sample = not any(a.startswith("s3://") for a in args)  # the whole ABID's are for machines with S3
        if command_of(args) in (["data", "manifest"], ["data", "stats"]) and on_the_sample:
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, f"bintally {' '.join(args)}: {result.output}"
    assert (work / "runs" / "abid.parquet").exists() and (work / "counts.png").exists()
