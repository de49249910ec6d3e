"""LIDC-IDRI style pickles (Prob. U-Net / Medical Matting layout), or a zip holding one, read with
the restricted unpickler; 4 folds by subject."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ...config import ProSegConfig
from ...errors import ConfigError, DataError
from ..cases import Case, cases_to_slices
from ..checks import check_finite
from ..pickles import read_pickle
from ..slices import SliceSet
from .format import Format, ReadOptions

PICKLE_SUFFIXES = (".pkl", ".pickle", ".zip")
RANK_MODES = ("area", "keep")
NUM_FOLDS = 4
LIDC_CLASSES = ["background", "foreground"]


def lidc_splits(subjects: Iterable[str], fold: int) -> dict[str, str]:
    """4 folds by subject: sorted subjects dealt round robin to folds 0..3; fold ``fold`` is test,
    fold ``fold + 1`` (mod 4) val, the rest train."""
    names = {0: "test", 1: "val"}
    return {subject: names.get((i - fold) % NUM_FOLDS, "train") for i, subject in enumerate(sorted(set(subjects)))}


def read_lidc_pickle(path: str | os.PathLike, rank_raters: str = "area", fold: int = 0,
                     config: ProSegConfig | None = None, whole: bool = False, store: Path | None = None) -> SliceSet:
    """Read a LIDC-IDRI style pickle (Prob. U-Net / Medical Matting layout), or a zip holding one.

    Layout: ``{key: {"image": (H, W) 0-255 or [0, 1], "masks": [k x (H, W)], "series_uid": str}}``;
    masks are thresholded ``> 0.5``. ``rank_raters="area"`` sorts each image's masks by ascending
    foreground area (stable; virtual raters ``rank1..rankk``, as for LIDC), ``"keep"`` keeps slot
    identities (real raters ``rater1..raterk``, as for QUBIQ). Images with fewer masks than the most
    leave the last slots unannotated. Subject = ``series_uid`` up to the first ``_``; splits from
    :func:`lidc_splits` with ``fold`` in 0..3. Returns slices preprocessed by ``config`` (``whole``
    and ``store``: see :func:`~proseg_pyro.data.cases.cases_to_slices`).
    """
    if rank_raters not in RANK_MODES:
        raise ConfigError(f"rank_raters must be one of {RANK_MODES}, got {rank_raters!r}")
    if fold not in range(NUM_FOLDS):
        raise ConfigError(f"fold must be in 0..{NUM_FOLDS - 1}, got {fold!r}")
    path = Path(path)
    records = read_pickle(path)
    if not isinstance(records, dict) or not records:
        raise DataError(path, "expected a non-empty dict {key: {'image', 'masks', 'series_uid'}}")
    entries = [_lidc_entry(path, str(key), record) for key, record in records.items()]
    num_raters = max(len(masks) for _, _, _, masks in entries)
    splits = lidc_splits((subject for _, subject, _, _ in entries), fold)

    def cases() -> Iterable[Case]:
        for key, subject, image, masks in entries:
            if rank_raters == "area":
                masks = masks[np.argsort(masks.sum(axis=(1, 2)), kind="stable")]
            labels = np.zeros((1, num_raters, *image.shape), dtype=np.uint8)
            labels[0, :len(masks)] = masks
            yield Case(key, subject, splits[subject], image[None, None], labels,
                       np.arange(num_raters) < len(masks))

    prefix = "rank" if rank_raters == "area" else "rater"
    return cases_to_slices(cases(), [f"{prefix}{i + 1}" for i in range(num_raters)], LIDC_CLASSES,
                           path.name.split(".")[0], config, path, whole, store)


def _lidc_entry(path: Path, key: str, record: Any) -> tuple[str, str, np.ndarray, np.ndarray]:
    """(key, subject, image (H, W) float32 in [0, 1], masks (k, H, W) uint8) of one pickle record."""
    if (not isinstance(record, dict) or not isinstance(record.get("image"), np.ndarray)
            or not isinstance(record.get("masks"), (list, tuple, np.ndarray))):
        raise DataError(path, f"record {key!r} lacks an 'image' array or a list of 'masks'")
    try:
        if any(np.iscomplexobj(array) for array in (record["image"], *record["masks"])):
            raise TypeError("complex values are not supported")
        image = np.asarray(record["image"], dtype=np.float32)
        masks = [np.asarray(mask, dtype=np.float32) for mask in record["masks"]]
    except (TypeError, ValueError) as err:
        raise DataError(path, f"record {key!r}: image and masks must be numeric arrays ({err})") from None
    if image.ndim != 2 or not image.size or not masks or any(mask.shape != image.shape for mask in masks):
        raise DataError(path, f"record {key!r}: expected a 2D image and masks of its shape, got image "
                              f"{image.shape} and masks {[mask.shape for mask in masks]}")
    check_finite(image, path)
    if not all(np.isfinite(mask).all() for mask in masks):  # a NaN would be thresholded to background
        raise DataError(path, f"record {key!r}: masks contain NaN or Inf values")
    if image.max() > 1:
        image = image / 255.0
    subject = str(record.get("series_uid", key)).split("_")[0]
    return key, subject, image, (np.stack(masks) > 0.5).astype(np.uint8)


def _read(path: Path, options: ReadOptions) -> SliceSet:
    return read_lidc_pickle(path, options.rank_raters, options.fold, options.config, options.whole, options.store)


FORMAT = Format("lidc", lambda path: path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES, _read,
                f"a LIDC pickle ({', '.join(PICKLE_SUFFIXES)})", options=("rank_raters", "fold"))
