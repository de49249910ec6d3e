"""The :class:`Format` type of the dataset registry and the :class:`ReadOptions` every format reads
with: a leaf module, so that each format's module can export its entry without importing the registry."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...config import ProSegConfig
from ..slices import SliceSet


@dataclass(frozen=True)
class ReadOptions:
    """How to read a dataset: the run's ``config`` (preprocessing), for LIDC pickles how to order
    the raters (``rank_raters`` "area" | "keep") and which ``fold`` (0..3) is the test split, and
    whether slices keep their ``whole`` field of view (else they are brought to ``image_size``);
    ``allow_outside_paths``: a manifest may name files outside its folder; ``store``: an empty
    folder to write the slices into and map them from (None: read them into memory)."""

    config: ProSegConfig
    rank_raters: str = "area"
    fold: int = 0
    whole: bool = False
    allow_outside_paths: bool = False
    store: Path | None = None


@dataclass(frozen=True)
class Format:
    """One dataset layout (see the module's docstring)."""

    name: str
    matches: Callable[[Path], bool]
    read: Callable[[Path, ReadOptions], SliceSet]
    files: Callable[[Path, ReadOptions], list[Path]]
    spacings: Callable[[Path, ReadOptions], list[tuple[float, float]]]
