"""The columns of the paper's tables: which scores are reported, under which header, in which direction.

evaluate's scoring and table, compare's tables and paired tests, and the fold summary all read
:data:`COLUMNS`, so reporting a new score is one entry here: a score that
:func:`proseg_pyro.metrics.batch_metrics` does not compute carries its own ``score`` function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

# (annotations (A, ...) bool of the raters who annotated the unit, probabilities (P, ...)) -> one value
UnitScore = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Column:
    """One reported score.

    ``key``: its key in a scored row; ``header``: the column title (``{rater}`` is replaced by each
    rater's name where ``per_rater``, whose row value is a list with one entry per rater);
    ``lower_is_better``: its direction (None: no direction, a part of a decomposition);
    ``compared``: tested between methods per case, and given as mean +- sd over seeds or folds;
    ``group``: ``"main"`` (the paper's Table 1/3) or ``"decomposition"`` (Table 9, GED's parts);
    ``score``: how to compute it for one scored unit (a case volume or a slice), for a score that
    :func:`proseg_pyro.metrics.batch_metrics` does not give (None for those it gives); the table
    reports its mean over units (NaN values left out).
    """

    key: str
    header: str
    lower_is_better: bool | None = False
    compared: bool = True
    group: str = "main"
    per_rater: bool = False
    score: UnitScore | None = None


COLUMNS: tuple[Column, ...] = (
    Column("ged", "GED", lower_is_better=True),
    Column("dice_soft", "D_soft"),
    Column("dice_max", "D_max"),
    Column("dice_match", "D_match"),
    Column("dice_rater", "D_{rater}", compared=False, per_rater=True),
    Column("dice_mean", "D_mean"),
    Column("d_pa", "d_pa", lower_is_better=True, compared=False, group="decomposition"),
    Column("d_pp", "d_pp", lower_is_better=None, compared=False, group="decomposition"),
    Column("d_aa", "d_aa", lower_is_better=None, compared=False, group="decomposition"),
)


def register(new: Column) -> Column:
    """Report ``new`` too, as the last column of its group (a key already reported is refused)."""
    global COLUMNS
    if any(entry.key == new.key for entry in COLUMNS):
        raise ValueError(f"score {new.key!r} is already reported")
    last = max((i for i, entry in enumerate(COLUMNS) if entry.group == new.group), default=len(COLUMNS) - 1)
    COLUMNS = (*COLUMNS[:last + 1], new, *COLUMNS[last + 1:])
    return new


def columns(*groups: str) -> list[Column]:
    """The columns of ``groups`` (all without any), in table order."""
    return [column for column in COLUMNS if not groups or column.group in groups]


def scored_here() -> list[Column]:
    """The columns computed from their own :attr:`Column.score`."""
    return [column for column in COLUMNS if column.score is not None]


def compared() -> list[Column]:
    """The scores tested between methods (and summarised with a spread), in table order."""
    return [column for column in COLUMNS if column.compared]


def compared_keys() -> tuple[str, ...]:
    """The keys of :func:`compared`."""
    return tuple(column.key for column in compared())


def headers(chosen: Iterable[Column], raters: list[str]) -> list[str]:
    """The titles of ``chosen`` columns, a per-rater column expanded to one title per rater."""
    return [title for column in chosen
            for title in ([column.header.format(rater=r) for r in raters] if column.per_rater else [column.header])]


def values(row: dict, chosen: Iterable[Column]) -> list[float]:
    """A scored row's values under ``chosen`` columns, a per-rater column expanded to its list."""
    return [value for column in chosen
            for value in (list(row[column.key]) if column.per_rater else [row[column.key]])]


def direction(column: Column) -> str:
    """How to read a difference in ``column``: which sign favours the first of two methods."""
    if column.lower_is_better is None:
        return "no direction"
    return "lower is better" if column.lower_is_better else "higher is better"


def column(key: str) -> Column:
    """The column of score ``key``."""
    for entry in COLUMNS:
        if entry.key == key:
            return entry
    raise KeyError(f"no reported score {key!r}; reported: {[entry.key for entry in COLUMNS]}")


def signed(value: float, digits: int = 4) -> str:
    """``value`` with its sign to ``digits`` decimals; a difference that rounds to zero reads
    ``+0.0000``, never ``-0.0000``, and NaN (nothing to compare) reads as a blank."""
    return "" if value != value else f"{round(value, digits) + 0.0:+.{digits}f}"
