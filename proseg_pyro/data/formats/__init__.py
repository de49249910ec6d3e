"""Dataset formats behind one registry, detected from the path a user gives (``--data PATH``).

Each :class:`Format` says whether a path is in its layout (``matches``), reads it into
preprocessed slices (``read``), lists the files its content depends on (``files``, for the slice
cache), gives the in-plane spacing of its training cases where its files carry one (``spacings``,
for the training spacing) and names the reader options its result depends on (``options``, for the
cache key). Formats are tried in registry order; a new format is one module that exports its
``FORMAT`` (a :class:`~proseg_pyro.data.formats.format.Format`) and one name in the registration at
the end of this module (or, from outside the package, one :func:`register` call).
"""
from __future__ import annotations

import os
from pathlib import Path

from ...errors import DataError
from . import lidc, manifest, nnunet, npc
from .format import Format, ReadOptions, no_spacing, the_path

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
for _module in (manifest, nnunet, lidc, npc):
    register(_module.FORMAT)

__all__ = ["FORMATS", "Format", "ReadOptions", "cache_key", "detect", "no_spacing", "register", "the_path",
           "unregister"]
