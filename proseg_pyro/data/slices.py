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
    per slice, ``splits`` one per slice (``"train"``, ``"val"``, ``"test"`` or ``""`` unassigned).
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

    def __post_init__(self) -> None:
        count = len(self.images)
        if not self.splits:
            self.splits = [""] * count
        if not (len(self.annotations) == len(self.mask) == len(self.subjects) == len(self.case_ids)
                == len(self.splits) == count):
            raise ValueError("SliceSet: per-slice fields differ in length")
        if self.annotations.shape[1] != len(self.raters) or self.mask.shape[1] != len(self.raters):
            raise ValueError("SliceSet: rater axis does not match the rater names")

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
                        self.name)

    def split(self, name: str) -> "SliceSet":
        """The slices whose split is ``name``."""
        return self.select(np.array([s == name for s in self.splits], dtype=bool))
