"""The checks every reader makes on what it reads: finite images, integer labels within the classes."""
from __future__ import annotations

import os

import numpy as np

from ..errors import DataError


def check_finite(array: np.ndarray, path: str | os.PathLike) -> None:
    """Raise a DataError naming ``path`` if ``array`` holds NaN or Inf."""
    if not np.isfinite(array).all():
        raise DataError(path, "image contains NaN or Inf values")


def check_labels(array: np.ndarray, classes: list[str], path: str | os.PathLike) -> np.ndarray:
    """Labels as uint8 after checking they are integers in ``0 .. len(classes) - 1`` (at most 256 classes)."""
    if len(classes) > 256:
        raise DataError(path, f"{len(classes)} classes: at most 256 are supported")
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(path, f"label values must be integers, got dtype {array.dtype}")
    if not np.issubdtype(array.dtype, np.integer) and (
            not np.isfinite(array).all() or (array != np.round(array)).any()):
        raise DataError(path, "label values must be integers")
    if array.size and (array.min() < 0 or array.max() >= len(classes)):
        outside = [v for v in np.unique(array).tolist() if not 0 <= v < len(classes)]
        raise DataError(path, f"label values {outside[:5]} outside the classes 0..{len(classes) - 1} "
                              f"({', '.join(classes)})")
    return array.astype(np.uint8)
