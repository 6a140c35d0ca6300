"""Hyperparameter search on Optuna: search space (space), study and workers (study), report, final model (final)."""

import warnings

import optuna

# Heartbeats and the matplotlib plots are marked experimental in Optuna, though stable since 2.x.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
