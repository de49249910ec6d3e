"""NPC-style (MMIS-2024) folders of ``.h5`` cases: three MR channels and up to four raters."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from ...config import ProSegConfig
from ...errors import DataError
from ...limits import require_memory, require_regular_file
from ..cases import Case, cases_to_slices
from ..checks import check_finite, check_labels
from ..slices import SliceSet
from ..splits import folder_split, subject_splits
from .format import Format, ReadOptions

# h5py is imported by the functions that need it, so that a process that trains from memory or from
# the slice cache does not carry it.

NPC_CHANNELS = ("t1", "t1c", "t2")
NPC_RATERS = ["A1", "A2", "A3", "A4"]
NPC_CLASSES = ["background", "tumour"]


def read_npc_case(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one NPC h5 case: keys ``t1``, ``t1c``, ``t2`` (2D slice or 3D volume, sliced along
    axis 0) and ``label_a1``..``label_a4`` (a missing key leaves that rater unannotated).

    Returns images (Z, 3, H, W) float32, labels (Z, 4, H, W) uint8 and mask (4,) bool.
    """
    import h5py

    path = Path(path)
    label_keys = {slot: f"label_a{slot + 1}" for slot in range(len(NPC_RATERS))}
    path = require_regular_file(path)
    try:
        with h5py.File(path, "r") as handle:
            found = {key: _h5_array(handle, key, path) for key in (*NPC_CHANNELS, *label_keys.values())
                     if key in handle}
    except DataError:
        raise
    except Exception as err:  # damaged bytes make h5py fail in many ways (OSError, RuntimeError, ...)
        raise DataError(path, f"not a readable h5 file ({type(err).__name__}: {err})") from None
    missing = [key for key in NPC_CHANNELS if key not in found]
    if missing:
        raise DataError(path, f"missing image keys {missing} (expected {list(NPC_CHANNELS)})")
    if any(np.iscomplexobj(array) for array in found.values()):
        raise DataError(path, "complex values are not supported (real-valued images only)")
    try:
        channels = [np.asarray(found[key], dtype=np.float32) for key in NPC_CHANNELS]
    except (TypeError, ValueError) as err:
        raise DataError(path, f"image channels must be numeric arrays ({err})") from None
    raters = {slot: np.asarray(found[key]) for slot, key in label_keys.items() if key in found}
    shapes = {array.shape for array in [*channels, *raters.values()]}
    if len(shapes) != 1 or len(channels[0].shape) not in (2, 3) or not channels[0].size:
        raise DataError(path, f"images and labels must share one non-empty 2D or 3D shape, got {sorted(shapes)}")
    images = np.stack(channels, axis=-3)
    images = images[None] if images.ndim == 3 else images
    check_finite(images, path)
    labels = np.zeros((images.shape[0], len(NPC_RATERS), *images.shape[-2:]), dtype=np.uint8)
    for slot, label in raters.items():
        labels[:, slot] = check_labels(label, NPC_CLASSES, path).reshape(labels[:, slot].shape)
    return images, labels, np.isin(np.arange(len(NPC_RATERS)), list(raters))


def _h5_array(handle, key: str, path: Path) -> np.ndarray:
    """Dataset ``key`` of an open h5 file, read only if it is a dataset stored in this file (no
    links or external storage) whose shape fits the memory budget."""
    import h5py

    if not isinstance(handle.get(key, getlink=True), h5py.HardLink):
        raise DataError(path, f"{key!r} is a link; only datasets stored in the file are read")
    dataset = handle[key]
    if not isinstance(dataset, h5py.Dataset) or dataset.is_virtual or dataset.external:
        raise DataError(path, f"{key!r} is not a dataset stored in the file")
    require_memory(dataset.size * max(dataset.dtype.itemsize, np.dtype(np.float32).itemsize) * 2, path,
                   f"reading {key!r} of shape {dataset.shape}")
    return dataset[()]


def read_npc_folder(folder: str | os.PathLike, config: ProSegConfig | None = None, whole: bool = False,
                    store: Path | None = None) -> SliceSet:
    """Read every ``*.h5`` under ``folder`` (one case each, see :func:`read_npc_case`).

    Case id = path relative to ``folder`` without ``.h5``; subject = file stem without a trailing
    ``_slice<N>``. Split = the first enclosing folder named ``train*``, ``val*`` or ``test*`` (as in
    the MMIS-2024 layout ``training_2d/``, ``validation/``, ``testing/``), else assigned by subject
    (:func:`~proseg_pyro.data.splits.subject_splits`). Returns slices preprocessed by ``config``
    (``whole`` and ``store``: see :func:`~proseg_pyro.data.cases.cases_to_slices`).
    """
    folder = Path(folder)
    files = sorted(folder.rglob("*.h5"))
    if not files:
        raise DataError(folder, "folder holds no .h5 files")
    subjects = [re.sub(r"[_-]slice[_-]?\d+$", "", file.stem) for file in files]
    folder_splits = [folder_split(file.relative_to(folder)) for file in files]
    assigned = subject_splits(s for s, split in zip(subjects, folder_splits) if not split)

    def cases() -> Iterable[Case]:
        for file, subject, split in zip(files, subjects, folder_splits):
            images, labels, mask = read_npc_case(file)
            yield Case(file.relative_to(folder).with_suffix("").as_posix(), subject, split or assigned[subject],
                       images, labels, mask)

    return cases_to_slices(cases(), NPC_RATERS, NPC_CLASSES, folder.name, config, folder, whole, store)


def _read(path: Path, options: ReadOptions) -> SliceSet:
    return read_npc_folder(path, options.config, options.whole, options.store)


FORMAT = Format("npc", lambda path: path.is_dir() and any(path.rglob("*.h5")), _read,
                "a folder of NPC .h5 files", lambda path, options: sorted(path.rglob("*.h5")))
