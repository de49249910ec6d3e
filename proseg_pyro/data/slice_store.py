"""Preprocessed slices on disk: written case by case, read back memory-mapped.

A store is a folder of ``images.npy`` (S, C, H, W) float32, ``annotations.npy`` (S, R, H, W) uint8,
``mask.npy`` (S, R) bool, ``regions.npy`` (S, 4) int32 (where each slice's image lies, the rest
being padding) and ``meta.json`` (raters, classes, subjects, case ids, splits, name).
Slices are grouped by split (train, val, test, unassigned; the cases' order kept within each), so
that a split of a memory-mapped store is a view of its files rather than a copy in memory. Writing
holds one case in memory at a time; reading maps the files (``numpy.load(mmap_mode="r")``, no pickle).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .slices import SliceSet
from .transforms import pad_slices

SPLIT_ORDER = ("train", "val", "test", "")
ARRAYS = {"images": np.float32, "annotations": np.uint8, "mask": np.bool_, "regions": np.int32}
META = "meta.json"


class SliceWriter:
    """Collects cases' preprocessed slices in spool files of ``folder`` (one per split and array),
    then :meth:`finish` writes the store, every slice padded at the bottom and right to the
    largest (images with each slice channel's minimum, annotations with background)."""

    def __init__(self, folder: Path, raters: list[str], classes: list[str], name: str, source: str | os.PathLike):
        self.folder, self.raters, self.classes, self.name, self.source = folder, raters, classes, name, source
        self.cases: list[tuple[str, int, int, int]] = []  # (split, slices, height, width) in order of addition
        self.subjects: dict[str, list[str]] = {split: [] for split in SPLIT_ORDER}
        self.case_ids: dict[str, list[str]] = {split: [] for split in SPLIT_ORDER}
        self.channels: int | None = None

    def _spool(self, split: str, array: str) -> Path:
        return self.folder / f"spool-{split or 'none'}-{array}.bin"

    def add(self, case_id: str, subject: str, split: str, images: np.ndarray, labels: np.ndarray,
            mask: np.ndarray, region: tuple[int, int, int, int]) -> None:
        """One case's ``images`` (Z, C, h, w), ``labels`` (Z, R, h, w), ``mask`` (R,) and the
        ``region`` (top, left, height, width) of its slices that is image."""
        if self.channels is not None and images.shape[1] != self.channels:
            raise DataError(self.source, f"case {case_id!r} has {images.shape[1]} channels, "
                                         f"earlier cases {self.channels}")
        self.channels = images.shape[1]
        count = len(images)
        arrays = {"images": images, "annotations": labels,
                  "mask": np.broadcast_to(np.asarray(mask, bool), (count, len(self.raters))),
                  "regions": np.broadcast_to(np.asarray(region, np.int32), (count, 4))}
        for array, values in arrays.items():
            with open(self._spool(split, array), "ab") as handle:
                handle.write(np.ascontiguousarray(values, dtype=ARRAYS[array]).tobytes())
        self.cases.append((split, count, *images.shape[-2:]))
        self.subjects[split] += [subject] * count
        self.case_ids[split] += [case_id] * count

    def finish(self) -> None:
        """Write the store's arrays and ``meta.json`` and remove the spool files."""
        if not self.cases:
            raise DataError(self.source, "the dataset holds no cases")
        height = max(case[2] for case in self.cases)
        width = max(case[3] for case in self.cases)
        total = sum(case[1] for case in self.cases)
        shapes = {"images": (total, self.channels, height, width),
                  "annotations": (total, len(self.raters), height, width), "mask": (total, len(self.raters)),
                  "regions": (total, 4)}
        # plain file writes, not a writable map: the written pages do not count in the process's memory
        outputs = {array: open(self.folder / f"{array}.npy", "wb") for array in ARRAYS}
        try:
            for array, shape in shapes.items():
                np.lib.format.write_array_header_2_0(outputs[array], {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(ARRAYS[array])), "fortran_order": False,
                    "shape": shape})
            for split in SPLIT_ORDER:
                self._copy_spool(split, outputs, height, width)
        finally:
            for output in outputs.values():
                output.close()
        meta = {"raters": self.raters, "classes": self.classes, "name": self.name,
                "splits": [split for split in SPLIT_ORDER for _ in self.subjects[split]],
                "subjects": [s for split in SPLIT_ORDER for s in self.subjects[split]],
                "case_ids": [c for split in SPLIT_ORDER for c in self.case_ids[split]]}
        (self.folder / META).write_text(json.dumps(meta))

    def _copy_spool(self, split: str, outputs: dict, height: int, width: int) -> None:
        """Append the cases of ``split`` from its spool files to ``outputs`` (open .npy files past
        their headers), one case at a time, padded to ``height`` x ``width``; remove the spools."""
        sizes = [case[1:] for case in self.cases if case[0] == split]
        if not sizes:
            return
        spools = {array: open(self._spool(split, array), "rb") for array in ARRAYS}
        try:
            for count, h, w in sizes:
                images = np.fromfile(spools["images"], np.float32, count * self.channels * h * w)
                labels = np.fromfile(spools["annotations"], np.uint8, count * len(self.raters) * h * w)
                mask = np.fromfile(spools["mask"], np.bool_, count * len(self.raters))
                regions = np.fromfile(spools["regions"], np.int32, count * 4)  # padding below and right: unchanged
                images, labels = pad_to((images.reshape(count, self.channels, h, w),
                                         labels.reshape(count, len(self.raters), h, w)), height, width)
                for array, values in (("images", images), ("annotations", labels), ("mask", mask),
                                      ("regions", regions)):
                    outputs[array].write(np.ascontiguousarray(values, dtype=ARRAYS[array]).tobytes())
        finally:
            for handle in spools.values():
                handle.close()
        for array in ARRAYS:
            self._spool(split, array).unlink()


def pad_to(arrays: tuple[np.ndarray, np.ndarray], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``images`` (Z, C, h, w) and ``labels`` (Z, R, h, w) padded at the bottom and right to
    ``height`` x ``width`` (images with each slice channel's minimum, labels with 0)."""
    images, labels = arrays
    if images.shape[-2:] == (height, width):
        return images, labels
    return pad_slices(images, labels, [(0, 0), (0, 0), (0, height - images.shape[-2]), (0, width - images.shape[-1])])


def open_store(folder: Path, in_memory: bool = False) -> SliceSet:
    """The store in ``folder`` memory-mapped (``in_memory``: read into memory). A store whose files
    are missing, truncated or disagree in shape or dtype raises ValueError (or OSError)."""
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    arrays = {array: np.load(folder / f"{array}.npy", mmap_mode=None if in_memory else "r", allow_pickle=False)
              for array in ARRAYS}
    for array, dtype in ARRAYS.items():
        if arrays[array].dtype != dtype:
            raise ValueError(f"{array}.npy holds {arrays[array].dtype}, expected {np.dtype(dtype)}")
    count, raters = len(meta["splits"]), len(meta["raters"])
    images, annotations, mask, regions = (arrays[array] for array in ARRAYS)
    if (images.ndim != 4 or annotations.shape != (count, raters, *images.shape[-2:]) or len(images) != count
            or mask.shape != (count, raters) or regions.shape != (count, 4)):
        raise ValueError("the store's arrays disagree in shape")
    return SliceSet(images=images, annotations=annotations, mask=mask, raters=list(meta["raters"]),
                    classes=list(meta["classes"]), subjects=list(meta["subjects"]),
                    case_ids=list(meta["case_ids"]), splits=list(meta["splits"]), name=str(meta["name"]),
                    regions=regions)
