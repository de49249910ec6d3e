"""JSON manifests: a dataset described by one file naming its raters, classes and cases.

A manifest lies beside its files (paths relative to it)::

    {"name": "npc", "raters": ["A1", "A2"], "classes": ["background", "tumour"],
     "rgb": "channels",                       # optional: "channels" (default) or "grey"
     "cases": [{"id": "P001", "subject": "P001", "split": "train",
                "image": ["P001_t1.nii.gz", "P001_t2.nii.gz"], "annotations": {"A1": "P001_A1.nii.gz"}}]}

``subject`` defaults to ``id``, ``split`` (train/val/test) is assigned by subject when absent,
``image`` is one path or a list of channel paths, ``annotations`` may omit raters (mask False).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...config import ProSegConfig
from ...errors import DataError
from ...io_utils import read_json
from ..cases import Case, cases_to_slices
from ..images import read_channels, read_geometry, read_label
from ..slices import SliceSet
from ..splits import SPLITS, subject_splits
from .format import Format, ReadOptions

RGB_MODES = ("channels", "grey")


@dataclass
class Manifest:
    """A validated manifest; ``cases`` entries hold ``id``, ``subject``, ``split`` ("" if none),
    ``image`` (list of channel paths) and ``annotations`` ({rater: path}), paths resolved."""

    path: Path
    name: str
    raters: list[str]
    classes: list[str]
    rgb: str
    cases: list[dict[str, Any]]

    def files(self) -> list[Path]:
        """Every image and annotation path the manifest names."""
        return [file for case in self.cases for file in (*case["image"], *case["annotations"].values())]


def read_manifest(path: str | os.PathLike, allow_outside_paths: bool = False) -> Manifest:
    """Parse and validate a manifest's structure (files are checked when read).

    Every file it names must lie inside the manifest's folder (after following symlinks), unless
    ``allow_outside_paths``: a manifest from elsewhere cannot make the readers open any file on disk.
    """
    path = Path(path)

    def require(condition: bool, problem: str) -> None:
        if not condition:
            raise DataError(path, problem)

    values = read_json(path)
    require(isinstance(values, dict), "a manifest must be a JSON object")
    missing = [key for key in ("raters", "classes", "cases") if key not in values]
    require(not missing, f"missing required keys {missing}")
    raters, classes, entries = values["raters"], values["classes"], values["cases"]
    for key, items, least in (("raters", raters, 1), ("classes", classes, 2)):
        require(_is_names(items) and len(items) >= least and len(set(items)) == len(items),
                f"'{key}' must be a list of at least {least} distinct strings")
    rgb = values.get("rgb", "channels")
    require(rgb in RGB_MODES, f"'rgb' must be one of {RGB_MODES}, got {rgb!r}")
    require(isinstance(entries, list), "'cases' must be a list")
    require(bool(entries), "the dataset holds no cases")
    cases, seen = [], set()
    for number, entry in enumerate(entries):
        require(isinstance(entry, dict) and isinstance(entry.get("id"), str) and "image" in entry,
                f"case #{number} must be an object with a string 'id' and an 'image'")
        case_id = entry["id"]
        where = f"case {case_id!r}"
        require(case_id not in seen, f"{where}: duplicate id")
        seen.add(case_id)
        image = [entry["image"]] if isinstance(entry["image"], str) else entry["image"]
        require(_is_names(image) and bool(image), f"{where}: 'image' must be a path or a list of paths")
        annotations = entry.get("annotations", {})
        require(isinstance(annotations, dict) and _is_names(list(annotations.values())),
                f"{where}: 'annotations' must map rater names to paths")
        unknown = [rater for rater in annotations if rater not in raters]
        require(not unknown, f"{where}: unknown rater(s) {unknown} (raters: {', '.join(raters)})")
        subject, split = entry.get("subject", case_id), entry.get("split", "")
        require(isinstance(subject, str), f"{where}: 'subject' must be a string")
        require(split in ("", *SPLITS), f"{where}: 'split' must be one of {SPLITS}, got {split!r}")
        locate = lambda file: _located(path, file, where, allow_outside_paths)  # noqa: E731
        cases.append({"id": case_id, "subject": subject, "split": split, "image": [locate(file) for file in image],
                      "annotations": {rater: locate(file) for rater, file in annotations.items()}})
    name = values.get("name", path.stem)
    require(isinstance(name, str), "'name' must be a string")
    return Manifest(path, name, raters, classes, rgb, cases)


def _located(manifest: Path, file: str, where: str, allow_outside: bool) -> Path:
    """``file`` of a manifest's case as a path beside the manifest, refused if it leads outside
    the manifest's folder (absolute, ``..`` or a symlink out) and ``allow_outside`` is False."""
    located = manifest.parent / file
    if allow_outside:
        return located
    try:
        inside = located.resolve().is_relative_to(manifest.parent.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        raise DataError(manifest, f"{where}: cannot resolve {file!r} (a symlink loop?)") from None
    if not inside:
        raise DataError(manifest, f"{where}: {file!r} lies outside the dataset folder "
                                  "(pass --allow-outside-paths to read it anyway)")
    return located


def _is_names(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(item, str) for item in items)


def _case_splits(manifest: Manifest) -> list[str]:
    """One split per case: its own, else its subject's explicit one, else assigned by subject."""
    explicit: dict[str, str] = {}
    for case in manifest.cases:
        if case["split"] and explicit.setdefault(case["subject"], case["split"]) != case["split"]:
            raise DataError(manifest.path, f"subject {case['subject']!r} is in both "
                                           f"{explicit[case['subject']]!r} and {case['split']!r}; "
                                           "splits are by subject")
    assigned = subject_splits(case["subject"] for case in manifest.cases if case["subject"] not in explicit)
    return [explicit.get(case["subject"]) or assigned[case["subject"]] for case in manifest.cases]


def _read_case(manifest: Manifest, entry: dict[str, Any], split: str) -> Case:
    """Read one case's channels and annotations, checking grids, values and rater slots."""
    images, geometry = read_channels(entry["image"], grey=manifest.rgb == "grey")
    labels = np.zeros((images.shape[0], len(manifest.raters), *images.shape[-2:]), dtype=np.uint8)
    mask = np.zeros(len(manifest.raters), dtype=bool)
    for rater, file in entry["annotations"].items():
        slot = manifest.raters.index(rater)
        labels[:, slot] = read_label(file, entry["image"][0], geometry, manifest.classes)
        mask[slot] = True
    return Case(entry["id"], entry["subject"], split, images, labels, mask, geometry)


def training_spacings(manifest: Manifest) -> list[tuple[float, float]]:
    """In-plane (x, y) spacing in mm of each training case's first channel, from the file headers."""
    splits = _case_splits(manifest)
    return [read_geometry(entry["image"][0]).in_plane_spacing
            for entry, split in zip(manifest.cases, splits) if split == "train"]


def load_manifest(manifest: Manifest | str | os.PathLike, config: ProSegConfig | None = None,
                  whole: bool = False, store: Path | None = None) -> SliceSet:
    """Read every case of a manifest into preprocessed slices (3D volumes sliced along axis 0;
    ``whole`` and ``store``: see :func:`~proseg_pyro.data.cases.cases_to_slices`)."""
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    splits = _case_splits(manifest)
    cases = (_read_case(manifest, entry, split) for entry, split in zip(manifest.cases, splits))
    return cases_to_slices(cases, manifest.raters, manifest.classes, manifest.name, config, manifest.path, whole,
                           store)


def _read(path: Path, options: ReadOptions) -> SliceSet:
    return load_manifest(read_manifest(path, options.allow_outside_paths), options.config, options.whole,
                         options.store)


def _files(path: Path, options: ReadOptions) -> list[Path]:
    return [path, *read_manifest(path, options.allow_outside_paths).files()]


def _spacings(path: Path, options: ReadOptions) -> list[tuple[float, float]]:
    return training_spacings(read_manifest(path, options.allow_outside_paths))


FORMAT = Format("manifest", lambda path: path.is_file() and path.suffix.lower() == ".json", _read,
                "a manifest (.json)", _files, _spacings)
