"""The search space: a small YAML file naming TrainConfig fields, each held fixed or sampled by Optuna.

    fixed:                      # TrainConfig fields every trial shares
      backbone: tf_efficientnet_lite0
    params:                     # TrainConfig fields Optuna samples, in this order
      lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      head: {type: categorical, choices: [classify, ordinal]}
      ordinal_sigma: {type: float, low: 0.4, high: 1.2, when: {head: ordinal}}

`when` samples a parameter only if earlier values match, so a trial never carries a knob its
configuration ignores (no label smoothing on an ordinal head). The tuner owns the splits and the
monitored metric: every trial trains on `train` and is judged on `val` by the study's metric; the
test split is never touched while tuning.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any, Literal

import optuna
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bintally import storage
from bintally.train.config import TrainConfig

Choice = bool | int | float | str | None
TUNER_OWNED = ("train_splits", "val_split", "monitor")
PACKAGED = ("default", "original", "cpu-screen")


class SpaceError(ValueError):
    """A search space that cannot be used, with the reason."""


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid")
    when: dict[str, list[Choice]] = {}

    @field_validator("when", mode="before")
    @classmethod
    def _listify(cls, when: dict[str, Any]) -> dict[str, list[Any]]:
        return {k: v if isinstance(v, list) else [v] for k, v in (when or {}).items()}

    def applies(self, values: dict[str, Any]) -> bool:
        return all(name in values and values[name] in allowed for name, allowed in self.when.items())


class _Range(_Param):
    """A numeric range; subclasses narrow `low` and `high` to their type."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> _Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    def extremes(self) -> list[Choice]:
        """The values worth checking against TrainConfig before any trial runs."""
        return [self.low, self.high]


class FloatParam(_Range):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


class IntParam(_Range):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Choice] = Field(min_length=1)

    def extremes(self) -> list[Choice]:
        return self.choices

    def suggest(self, trial: optuna.Trial, name: str) -> Choice:
        return trial.suggest_categorical(name, self.choices)


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    fixed: dict[str, Any] = {}
    params: dict[str, Param] = {}

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        names = [*self.fixed, *self.params]
        unknown = sorted(set(names) - set(TrainConfig.model_fields))
        if unknown:
            raise ValueError(f"not TrainConfig fields: {', '.join(unknown)}")
        owned = sorted(set(names) & set(TUNER_OWNED))
        if owned:
            raise ValueError(f"{', '.join(owned)}: the tuner trains on 'train' and judges on 'val' by the study's metric")
        both = sorted(set(self.fixed) & set(self.params))
        if both:
            raise ValueError(f"both fixed and sampled: {', '.join(both)}")
        self._check_conditions()
        self._check_values()
        return self

    def _check_conditions(self) -> None:
        known = set(self.fixed)
        for name, param in self.params.items():
            missing = sorted(set(param.when) - known)
            if missing:
                raise ValueError(f"{name}: 'when' refers to {', '.join(missing)}, not fixed or sampled before it")
            known.add(name)

    def _check_values(self) -> None:
        """A bad fixed value, choice or range end fails now, not at some trial."""
        trial_config(self.fixed, "accuracy")
        for name, param in self.params.items():
            for value in param.extremes():
                trial_config({**self.fixed, name: value}, "accuracy")

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """The TrainConfig fields of one trial: the fixed ones plus those Optuna suggests."""
        values = dict(self.fixed)
        for name, param in self.params.items():
            if param.applies(values):
                values[name] = param.suggest(trial, name)
        return values


def trial_config(values: dict[str, Any], metric: str) -> TrainConfig:
    """A trial's TrainConfig: trained on 'train'; its best epoch chosen on 'val' by the study's metric."""
    return TrainConfig(**values, train_splits=["train"], val_split="val", monitor=metric)


def parse_space(text: str, source: str = "space") -> SearchSpace:
    try:
        data = yaml.safe_load(text) or {}
        return SearchSpace.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise SpaceError(f"{source}: {exc}") from exc


def load_space(name_or_url: str) -> SearchSpace:
    """A packaged space by name ('default', 'original') or a YAML file at a path or URL."""
    if name_or_url in PACKAGED:
        text = (resources.files("bintally.tune") / "spaces" / f"{name_or_url}.yaml").read_text()
        return parse_space(text, name_or_url)
    try:
        text = storage.read_bytes(name_or_url).decode()
    except FileNotFoundError as exc:
        raise SpaceError(f"{name_or_url}: no such file (packaged spaces: {', '.join(PACKAGED)})") from exc
    return parse_space(text, name_or_url)
