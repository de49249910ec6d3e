"""Write a :class:`SliceSet` as NIfTI files (1 mm voxels) plus a manifest that ``load_dataset`` reads back."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ..io_utils import atomic_write_text
from .images import Geometry, write_image
from .slices import SliceSet


def write_manifest_dataset(slices: SliceSet, out_dir: str | os.PathLike) -> Path:
    """Write ``slices`` under ``out_dir`` as NIfTI files and ``manifest.json``; returns the manifest.

    The slices of one case id become one volume (Z, H, W) in their order: one float32 file per
    channel and one integer file per rater who annotated the case. ``load_dataset`` returns the
    same arrays (images up to float tolerance under the same config, annotations exactly), grouped
    by case, which is the original order whenever each case's slices are contiguous.
    """
    out = Path(out_dir)
    groups: dict[str, list[int]] = {}
    for index, case_id in enumerate(slices.case_ids):
        groups.setdefault(case_id, []).append(index)
    label_dtype = np.uint8 if len(slices.classes) <= 256 else np.int16
    cases = []
    for number, (case_id, index) in enumerate(groups.items()):
        mask = slices.mask[index]
        if (mask != mask[0]).any():
            raise ValueError(f"export: case {case_id!r} has raters who annotated only some of its slices")
        stem = f"{number:04d}_{safe_name(case_id)}"
        channels = range(slices.images.shape[1])
        images = [f"{stem}_image.nii.gz"] if len(channels) == 1 else [f"{stem}_image{c}.nii.gz" for c in channels]
        for channel, name in zip(channels, images):
            volume = slices.images[index, channel].astype(np.float32)
            write_image(volume, Geometry.unit(volume.shape), out / name)
        annotations = {}
        for slot in np.flatnonzero(mask[0]):
            rater = slices.raters[slot]
            annotations[rater] = f"{stem}_label-{safe_name(rater)}.nii.gz"
            labels = slices.annotations[index, slot].astype(label_dtype)
            write_image(labels, Geometry.unit(labels.shape), out / annotations[rater])
        entry = {"id": case_id, "subject": slices.subjects[index[0]],
                 "image": images[0] if len(images) == 1 else images, "annotations": annotations}
        if slices.splits[index[0]]:
            entry["split"] = slices.splits[index[0]]
        cases.append(entry)
    manifest = {"name": slices.name or out.name, "raters": list(slices.raters), "classes": list(slices.classes),
                "cases": cases}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return out / "manifest.json"


def safe_name(name: str) -> str:
    """``name`` reduced to characters safe in file names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)
