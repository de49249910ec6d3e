"""Dataset formats behind one registry, detected from the path a user gives (``--data PATH``).

Each :class:`Format` says whether a path is in its layout (``matches``), reads it into
preprocessed slices (``read``), lists the files its content depends on (``files``, for the slice
cache), gives the in-plane spacing of its training cases where its files carry one (``spacings``,
for the training spacing) and names the reader options its result depends on (``options``, for the
cache key). Formats are tried in registry order; a new format is one module that calls
:func:`register`, imported at the end of this one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...config import ProSegConfig
from ...errors import DataError
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
    """One dataset layout (see the module's docstring); ``description`` completes "expected ..."
    in the error for a path no format matches."""

    name: str
    matches: Callable[[Path], bool]
    read: Callable[[Path, ReadOptions], SliceSet]
    description: str
    files: Callable[[Path, ReadOptions], list[Path]] = the_path
    spacings: Callable[[Path, ReadOptions], list[tuple[float, float]]] = no_spacing
    options: tuple[str, ...] = ()


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add ``fmt`` to the registry (after the formats already there)."""
    if fmt.name in FORMATS:
        raise ValueError(f"a format named {fmt.name!r} is registered already")
    FORMATS[fmt.name] = fmt
    return fmt


def unregister(name: str) -> None:
    """Remove the format ``name`` from the registry."""
    del FORMATS[name]


def detect(path: str | os.PathLike) -> Format:
    """The first registered format whose layout ``path`` matches; bad paths raise DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    for fmt in FORMATS.values():
        if fmt.matches(path):
            return fmt
    raise DataError(path, "unknown data source: expected "
                          + ", ".join(fmt.description for fmt in FORMATS.values()))


def cache_key(fmt: Format, options: ReadOptions) -> dict:
    """What of ``options`` the slices ``fmt`` reads depend on (besides the config and the files)."""
    return ({"reader": fmt.name} | {name: getattr(options, name) for name in fmt.options}
            | ({"whole": True} if options.whole else {}))


# the formats, in the order they are tried: nnU-Net before NPC (its folders may also hold .h5 files)
from . import manifest, nnunet, lidc, npc  # noqa: E402,F401

__all__ = ["FORMATS", "Format", "ReadOptions", "cache_key", "detect", "no_spacing", "register", "the_path",
           "unregister"]
