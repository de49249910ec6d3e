"""The in-memory form every reader returns: 2D slices with all raters' masks in fixed slots."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SliceSet:
    """Preprocessed 2D slices of a multi-rater dataset.

    ``images`` (S, C, H, W) float32, ``annotations`` (S, R, H, W) uint8 (slot ``i`` is rater ``i``;
    unannotated slots hold 0), ``mask`` (S, R) bool (rater ``i`` annotated slice ``s``),
    ``raters`` the R rater names, ``classes`` the K class names, ``subjects`` and ``case_ids`` one
    per slice, ``splits`` one per slice (``"train"``, ``"val"``, ``"test"`` or ``""`` unassigned),
    ``regions`` (S, 4) int (top, left, height, width) where each slice's image lies in its H x W,
    the rest being padding that stacks slices of different sizes (None: every pixel is image).
    """

    images: np.ndarray
    annotations: np.ndarray
    mask: np.ndarray
    raters: list[str]
    classes: list[str]
    subjects: list[str]
    case_ids: list[str]
    splits: list[str] = field(default_factory=list)
    name: str = ""
    regions: np.ndarray | None = None

    def __post_init__(self) -> None:
        count = len(self.images)
        if not self.splits:
            self.splits = [""] * count
        if not (len(self.annotations) == len(self.mask) == len(self.subjects) == len(self.case_ids)
                == len(self.splits) == count):
            raise ValueError("SliceSet: per-slice fields differ in length")
        if self.annotations.shape[1] != len(self.raters) or self.mask.shape[1] != len(self.raters):
            raise ValueError("SliceSet: rater axis does not match the rater names")
        if self.regions is not None and self.regions.shape != (count, 4):
            raise ValueError("SliceSet: regions must hold (top, left, height, width) per slice")

    def __len__(self) -> int:
        return len(self.images)

    def select(self, index: np.ndarray | list[int]) -> "SliceSet":
        """The slices at ``index`` (integer positions or a boolean mask). Consecutive positions
        select a view (of a memory-mapped set: no copy in memory), any others a copy."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        pick = lambda items: [items[i] for i in index]  # noqa: E731
        rows = index
        if len(index) and index.dtype.kind in "iu" and (np.diff(index) == 1).all() and index[0] >= 0:
            rows = slice(int(index[0]), int(index[-1]) + 1)
        return SliceSet(self.images[rows], self.annotations[rows], self.mask[rows], list(self.raters),
                        list(self.classes), pick(self.subjects), pick(self.case_ids), pick(self.splits),
                        self.name, None if self.regions is None else self.regions[rows])

    def inside(self) -> np.ndarray | None:
        """(S, H, W) bool: the pixels of each slice that are image, not padding (None: all of them)."""
        if self.regions is None:
            return None
        return inside_regions(self.regions, self.images.shape[-2:])

    def split(self, name: str) -> "SliceSet":
        """The slices whose split is ``name``."""
        return self.select(np.array([s == name for s in self.splits], dtype=bool))


def inside_regions(regions: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(S, H, W) bool, True inside each slice's region (``regions`` (S, 4): top, left, height, width)."""
    rows, columns = np.arange(shape[0]), np.arange(shape[1])
    top, left, height, width = (regions[:, k, None] for k in range(4))
    in_rows = (rows >= top) & (rows < top + height)  # (S, H)
    in_columns = (columns >= left) & (columns < left + width)  # (S, W)
    return in_rows[:, :, None] & in_columns[:, None, :]
