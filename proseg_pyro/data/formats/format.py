"""The :class:`Format` type of the dataset registry and the :class:`ReadOptions` every format reads
with: a leaf module, so that each format's module exports its entry without importing the registry."""
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


def the_path(path: Path, options: ReadOptions) -> list[Path]:
    """The files of a source that is one file or one folder (a folder counts with all its files)."""
    return [path]


def no_spacing(path: Path, options: ReadOptions) -> list[tuple[float, float]]:
    """The spacings of a source whose files carry none."""
    return []


@dataclass(frozen=True)
class Format:
    """One dataset layout (see :mod:`proseg_pyro.data.formats`); ``description`` completes
    "expected ..." in the error for a path no format matches."""

    name: str
    matches: Callable[[Path], bool]
    read: Callable[[Path, ReadOptions], SliceSet]
    description: str
    files: Callable[[Path, ReadOptions], list[Path]] = the_path
    spacings: Callable[[Path, ReadOptions], list[tuple[float, float]]] = no_spacing
    options: tuple[str, ...] = ()
