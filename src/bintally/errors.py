"""The failures that are the input's or the environment's fault, not a bug: the CLI prints them as one line."""

from __future__ import annotations


class BintallyError(RuntimeError):
    """Base of bintally's own clear failures (bad weights, a diverged run, an export that fails its check)."""
