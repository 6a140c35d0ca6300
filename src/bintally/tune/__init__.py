"""Hyperparameter search on Optuna: search space (space), study and workers (study), report, final model (final)."""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna


@contextmanager
def optuna_stable_apis() -> Iterator[None]:
    """Heartbeats and the matplotlib plots are marked experimental in Optuna, though stable since 2.x:
    silence that warning where bintally uses them, and nowhere else (also works as a decorator)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
