"""Raw dataset cases and their assembly into preprocessed 2D slices (the one place every format's
cases are preprocessed, through :class:`~proseg_pyro.data.preprocess.Preprocess`)."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..config import ProSegConfig
from ..limits import require_memory
from .images import Geometry
from .preprocess import Preprocess
from .slice_store import SliceWriter, open_store
from .slices import SliceSet


@dataclass
class Case:
    """One case before preprocessing: ``images`` (Z, C, H, W) float32, ``labels`` (Z, R, H, W)
    uint8 (zeros where unannotated), ``mask`` (R,) bool (which raters annotated the case) and the
    images' ``geometry`` (None for sources without one: no resampling)."""

    case_id: str
    subject: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    geometry: Geometry | None = None


def cases_to_slices(cases: Iterable[Case], raters: list[str], classes: list[str], name: str,
                    config: ProSegConfig | None, source: str | os.PathLike, whole: bool = False,
                    store: Path | None = None) -> SliceSet:
    """Preprocess ``cases`` one at a time into a slice store (errors name ``source``).

    Each case goes through :meth:`Preprocess.forward` of ``config``: resampled in-plane to
    ``config.spacing`` (cases with a geometry), each slice's channels normalised by
    ``config.intensity``, slices brought to ``config.image_size`` (crop/pad or resize), or with
    ``whole`` keeping their whole field of view, padded at the bottom and right to the largest
    case's size so that they stack (padding: each slice channel's minimum, labels background).
    Slices are grouped by split (:mod:`~proseg_pyro.data.slice_store`). With ``store`` (an empty
    folder) the slices are written there and returned memory-mapped; without, they are returned in
    memory. Only one case is held in memory at a time while the store is written.
    """
    if store is not None:
        _write_store(cases, raters, classes, name, config, source, whole, store)
        return open_store(store)
    with tempfile.TemporaryDirectory(prefix="proseg-pyro-slices-") as folder:
        _write_store(cases, raters, classes, name, config, source, whole, Path(folder))
        slices = open_store(Path(folder))
        require_memory(slices.images.nbytes + slices.annotations.nbytes, source,
                       f"{len(slices)} slices of {slices.images.shape[-1]}x{slices.images.shape[-2]} in memory")
        return open_store(Path(folder), in_memory=True)


def _write_store(cases: Iterable[Case], raters: list[str], classes: list[str], name: str,
                 config: ProSegConfig | None, source: str | os.PathLike, whole: bool, folder: Path) -> None:
    """The preprocessing of :func:`cases_to_slices`, written into ``folder``."""
    preprocess = Preprocess.of(config or ProSegConfig())
    writer = SliceWriter(folder, list(raters), list(classes), name, source)
    for case in cases:
        # the case's images float32 and labels at their preprocessed size, held twice while preprocessed
        height, width = preprocess.output_size(case.images.shape, case.geometry, whole)
        require_memory(2 * len(case.images) * height * width * (4 * case.images.shape[1] + len(raters)), source,
                       f"case {case.case_id!r}: {len(case.images)} slices of {width}x{height}")
        prepared = preprocess.forward(case.images, case.geometry, case.labels, whole)
        writer.add(case.case_id, case.subject, case.split, prepared.images, prepared.labels, case.mask,
                   prepared.inside)
    writer.finish()
