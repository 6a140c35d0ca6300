"""The count classes: what each output of a model means. The one definition, importable without torch.

Class i is the count `values[i]`. With `open_top`, the last class is "values[-1] or more" (K+): with K = 10 a
bin of 14 items is class 10, shown as "10+". Every true or recorded count meets the classes through `clip`
(training targets, metrics, calibration, decisions), and every answer is named through `label`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

# The ranges every report gives numbers for: empty bins, the replaced system's 1-5, and above it.
SMALL = (1, 5)


class CountClasses(BaseModel):
    model_config = ConfigDict(frozen=True)

    values: list[int]
    open_top: bool = False

    @field_validator("values")
    @classmethod
    def _increasing(cls, values: list[int]) -> list[int]:
        if len(values) < 2 or sorted(set(values)) != values or values[0] < 0:
            raise ValueError(f"count classes must be at least two distinct counts >= 0 in increasing order, got {values}")
        return values

    @classmethod
    def from_counts(cls, counts: Iterable[int], top: int | None) -> CountClasses:
        """The classes training rows of these counts need: every count below `top` that occurs, and one open class
        `top`+ if any count reaches it (None: every count that occurs, no open class)."""
        counts = list(counts)
        if top is None or max(counts, default=0) < top:
            return cls(values=sorted(set(counts)))
        return cls(values=sorted({min(c, top) for c in counts}), open_top=True)

    @classmethod
    def of(cls, classes: CountClasses | Sequence[int]) -> CountClasses:
        """Classes as given, or a plain list of counts as closed classes."""
        return classes if isinstance(classes, CountClasses) else cls(values=list(classes))

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> CountClasses:
        """The classes a probabilities mapping names ("0", ..., "9", "10+"), in order."""
        labels = list(labels)
        return cls(values=[int(x.removesuffix("+")) for x in labels], open_top=bool(labels) and labels[-1].endswith("+"))

    @property
    def top(self) -> int:
        return self.values[-1]

    def label(self, value: int) -> str:
        return f"{value}+" if self.open_top and value >= self.top else str(value)

    @property
    def labels(self) -> list[str]:
        return [self.label(v) for v in self.values]

    def clip(self, counts: Sequence[int] | np.ndarray) -> np.ndarray:
        """True or recorded counts as class values: with an open top, every count of K or more is K."""
        counts = np.asarray(counts, dtype=np.int64)
        return np.minimum(counts, self.top) if self.open_top else counts

    def contains(self, count: int) -> bool:
        """Whether a true or recorded count has a class here: any count of K or more with an open top, else one of
        the counts the classes name (so a record of a count the classes skip cannot be judged)."""
        return bool(self.contains_each([count])[0])

    def contains_each(self, counts: Sequence[int] | np.ndarray) -> np.ndarray:
        """`contains`, count by count."""
        return np.isin(self.clip(counts), self.values)

    def index(self, counts: Sequence[int] | np.ndarray) -> np.ndarray:
        """Class indices of counts the classes contain (check `contains` first)."""
        return np.searchsorted(np.asarray(self.values), self.clip(counts))

    def is_open(self, count: int) -> bool:
        """Whether a count can only be told as "K or more" by this model."""
        return bool(self.is_open_each([count])[0])

    def is_open_each(self, counts: Sequence[int] | np.ndarray) -> np.ndarray:
        """`is_open`, count by count."""
        return self.open_top & (np.asarray(counts, dtype=np.int64) >= self.top)

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Name -> inclusive range of class values, for the ranges these classes reach: 0, 1-5, 6 to K-1, K+."""
        low, high = SMALL
        top_closed = self.top - 1 if self.open_top else self.top
        high = min(high, top_closed)  # with K of 5 or less the open class is not one of the small counts
        candidates = {"0": (0, 0), f"{low}-{high}": (low, high), f"{high + 1}-{top_closed}": (high + 1, top_closed)}
        if self.open_top:
            candidates[self.label(self.top)] = (self.top, self.top)
        return {name: (a, b) for name, (a, b) in candidates.items() if a <= b and any(a <= v <= b for v in self.values)}


def parse_classes(text: str) -> list[int]:
    """'1-5' or '1,2,3,4,5' (or a mix, '0,2-4') -> the counts, in order."""
    values: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        values.extend(range(int(low), int(high or low) + 1))
    return sorted(set(values))
