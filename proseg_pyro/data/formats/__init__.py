"""Dataset formats behind one registry, detected from the path a user gives (``--data PATH``).

Each :class:`Format` says whether a path is in its layout (``matches``), reads it into
preprocessed slices (``read``), lists the files its content depends on (``files``, for the slice
cache) and gives the in-plane spacing of its training cases where its files carry one
(``spacings``, for the training spacing). Formats are tried in registry order.
"""
from __future__ import annotations

import os
from pathlib import Path

from ...errors import DataError
from ..slices import SliceSet
from . import nnunet
from .format import Format, ReadOptions

PICKLE_SUFFIXES = (".pkl", ".pickle", ".zip")


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add ``fmt`` to the registry (after the formats already there)."""
    FORMATS[fmt.name] = fmt
    return fmt


def detect(path: str | os.PathLike) -> Format:
    """The first registered format whose layout ``path`` matches; bad paths raise DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    for fmt in FORMATS.values():
        if fmt.matches(path):
            return fmt
    raise DataError(path, "unknown data source: expected an nnU-Net v2 / Decathlon folder (dataset.json, imagesTr, "
                          f"labelsTr), a manifest (.json), a LIDC pickle ({', '.join(PICKLE_SUFFIXES)}) or a "
                          "folder of NPC .h5 files")


def _manifest_read(path: Path, options: ReadOptions) -> SliceSet:
    from ..dataset import load_manifest, read_manifest
    return load_manifest(read_manifest(path, options.allow_outside_paths), options.config, options.whole,
                         options.store)


def _manifest_files(path: Path, options: ReadOptions) -> list[Path]:
    from ..dataset import read_manifest
    return [path, *read_manifest(path, options.allow_outside_paths).files()]


def _manifest_spacings(path: Path, options: ReadOptions) -> list[tuple[float, float]]:
    from ..dataset import read_manifest, training_spacings
    return training_spacings(read_manifest(path, options.allow_outside_paths))


def _lidc_read(path: Path, options: ReadOptions) -> SliceSet:
    from ..readers import read_lidc_pickle
    return read_lidc_pickle(path, options.rank_raters, options.fold, options.config, options.whole,
                            options.store)


def _npc_read(path: Path, options: ReadOptions) -> SliceSet:
    from ..readers import read_npc_folder
    return read_npc_folder(path, options.config, options.whole, options.store)


def _no_spacing(path: Path, options: ReadOptions) -> list[tuple[float, float]]:
    return []


register(nnunet.FORMAT)  # first: its folders may also hold other files
register(Format("manifest", lambda path: path.is_file() and path.suffix.lower() == ".json",
                _manifest_read, _manifest_files, _manifest_spacings))
register(Format("lidc", lambda path: path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES, _lidc_read,
                lambda path, options: [path], _no_spacing))
register(Format("npc", lambda path: path.is_dir() and any(path.rglob("*.h5")), _npc_read,
                lambda path, options: sorted(path.rglob("*.h5")), _no_spacing))

__all__ = ["FORMATS", "Format", "ReadOptions", "detect", "nnunet", "register"]
