"""JSON manifests (DESIGN section 6), the cache of preprocessed slices, and ``load_dataset``.

A manifest lies beside its files (paths relative to it)::

    {"name": "npc", "raters": ["A1", "A2"], "classes": ["background", "tumour"],
     "rgb": "channels",                       # optional: "channels" (default) or "grey"
     "cases": [{"id": "P001", "subject": "P001", "split": "train",
                "image": ["P001_t1.nii.gz", "P001_t2.nii.gz"], "annotations": {"A1": "P001_A1.nii.gz"}}]}

``subject`` defaults to ``id``, ``split`` (train/val/test) is assigned by subject when absent,
``image`` is one path or a list of channel paths, ``annotations`` may omit raters (mask False).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..config import ProSegConfig
from ..errors import ConfigError, DataError
from ..io_utils import read_json
from ..limits import require_regular_file
from .images import read_geometry
from .readers import SPLITS, Case, cases_to_slices, read_channels, read_label, subject_splits
from .slice_store import open_store
from .slices import SliceSet
from .synthetic import make_synthetic
from .transforms import normalise_slices

RGB_MODES = ("channels", "grey")
CACHE_VERSION = 4


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
    ``whole`` and ``store``: see :func:`~proseg_pyro.data.readers.cases_to_slices`)."""
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    splits = _case_splits(manifest)
    cases = (_read_case(manifest, entry, split) for entry, split in zip(manifest.cases, splits))
    return cases_to_slices(cases, manifest.raters, manifest.classes, manifest.name, config, manifest.path, whole,
                           store)


# --- cache ---------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/proseg-pyro``, else ``~/.cache/proseg-pyro``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "proseg-pyro"


def _content_hash(file: Path) -> str | None:
    """BLAKE2b of a file's bytes (None if it is missing: reading it will then report the problem)."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(require_regular_file(file), "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except DataError:
        return None
    return digest.hexdigest()


def _fingerprint(files: Iterable[Path]) -> list[list[Any]]:
    """(path, content hash) of every file; folders (DICOM series) expand to their files."""
    rows = []
    for file in files:
        for item in sorted(p for p in file.rglob("*") if p.is_file()) if file.is_dir() else [file]:
            rows.append([str(item.absolute()), _content_hash(item)])
    return rows


def _cache_folder(folder: Path) -> Path:
    """``folder`` after refusing a symlinked cache folder: one planted by someone else would send
    the cache's writes and deletions elsewhere."""
    if folder.is_symlink():
        raise DataError(folder, "the cache folder is a symlink; give a real folder (--cache-dir) or --no-cache")
    return folder


def _cached(source: Path, files: list[Path], options: dict[str, Any], config: ProSegConfig,
            build: Callable[[Path | None], SliceSet], folder: Path) -> SliceSet:
    """``build(store)``'s slices, written into a slice store in ``folder`` and read back memory-mapped,
    or the store an earlier call with the same inputs wrote there.

    The key hashes every file's path and content, the reader options and the preprocessing config,
    so an edited file is read afresh whatever its size and time stamp. A store is written under a
    temporary name and renamed when complete; a damaged one is rebuilt. Older entries of the same
    source are removed when a new one is written; a cache that cannot be written is warned about
    (the slices are then read into memory).
    """
    key_parts = {"version": CACHE_VERSION, "options": options, "files": _fingerprint(files),
                 "config": [config.image_size, config.resize, config.intensity, config.spacing]}
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()
    prefix = f"{source.name}-{hashlib.sha256(str(source.absolute()).encode()).hexdigest()[:8]}"
    entry = _cache_folder(folder) / f"{prefix}-{key[:24]}"
    slices = _read_cache(entry)
    if slices is not None:
        return slices
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".partial-{entry.name}-", dir=folder))
    except OSError as err:
        warnings.warn(f"could not write a cache for {source} in {folder}: {err.strerror or err}")
        return build(None)
    try:
        build(partial)
        _remove_entry(entry)  # a damaged entry of the same key
        partial.rename(entry)
    finally:
        _remove_entry(partial)
    for stale in folder.glob(f"{prefix}-*"):
        if stale.name != entry.name:
            _remove_entry(stale)
    return open_store(entry)


def _remove_entry(path: Path) -> None:
    """Remove a cache entry (a store folder; a symlink or file planted in its place is unlinked, not followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _read_cache(entry: Path) -> SliceSet | None:
    """The store in ``entry`` memory-mapped, or None when there is none or it is damaged (rebuild)."""
    if entry.is_symlink() or not entry.is_dir():
        return None
    try:
        return open_store(entry)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or from another version: rebuild


# --- entry point ---------------------------------------------------------------------------------
def load_dataset(source: str | os.PathLike, split: str | None = None, config: ProSegConfig | None = None, *,
                 rank_raters: str = "area", fold: int = 0, num_images: int = 240, seed: int = 0,
                 cache: bool = True, cache_dir: str | os.PathLike | None = None,
                 allow_outside_paths: bool = False, whole: bool = False) -> SliceSet:
    """Load a dataset as preprocessed 2D slices (all splits, or only ``split``).

    ``source``: a manifest (``.json``), a LIDC-style pickle (``.pkl``, ``.pickle`` or a ``.zip``
    holding one; ``rank_raters`` "area" | "keep" and ``fold`` 0..3 apply), an NPC folder of
    ``.h5`` files, or ``"synthetic"`` (:func:`make_synthetic` with ``num_images`` images from ``seed``,
    renormalised per slice like the other sources). ``config`` gives
    ``image_size``, ``resize``, ``intensity`` and ``spacing`` (default :class:`ProSegConfig`).
    Slices are brought to ``image_size`` (training's form), or with ``whole`` keep their whole field
    of view (evaluation's form; :func:`~proseg_pyro.data.readers.cases_to_slices`). File sources are
    cached in ``cache_dir`` (default :func:`default_cache_dir`, never the dataset's folder;
    ``cache=False`` rebuilds without reading or writing the cache). A manifest's files must lie in
    its folder unless ``allow_outside_paths``.

    Returns a :class:`SliceSet`: images (S, C, H, W) float32, annotations (S, R, H, W) uint8,
    mask (S, R) bool, grouped by split; from the cache memory-mapped (read-only). Bad input raises :class:`DataError` naming the file.
    """
    config = config or ProSegConfig()
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS} or None, got {split!r}")
    if isinstance(source, str) and source == "synthetic":
        slices = make_synthetic(num_images, config.image_size, seed)[0]
        slices = replace(slices, images=normalise_slices(slices.images, config.intensity))
    else:
        path = Path(source)
        files, options, build = _plan(path, config, rank_raters, fold, whole, allow_outside_paths)
        slices = (_cached(path, files, options, config, build, Path(cache_dir or default_cache_dir())) if cache
                  else build(None))
    return slices if split is None else slices.split(split)


def _plan(path: Path, config: ProSegConfig, rank_raters: str, fold: int, whole: bool, allow_outside_paths: bool
          ) -> tuple[list[Path], dict[str, Any], Callable[[Path | None], SliceSet]]:
    """The files a source depends on, its reader options, and how to read it (into a slice store
    folder, or None: into memory)."""
    from .formats import ReadOptions, detect

    fmt, options = detect(path), ReadOptions(config, rank_raters, fold, whole, allow_outside_paths)
    key = ({"reader": fmt.name} | ({"rank_raters": rank_raters, "fold": fold} if fmt.name == "lidc" else {})
           | ({"whole": True} if whole else {}))
    return fmt.files(path, options), key, lambda store: fmt.read(path, replace(options, store=store))


def dataset_spacing(source: str | os.PathLike, rank_raters: str = "area", fold: int = 0,
                    allow_outside_paths: bool = False) -> tuple[float, float] | None:
    """The median in-plane (x, y) spacing in mm of a dataset's training cases, or None for a source
    whose files carry no spacing (the built-in set, LIDC pickles, NPC folders)."""
    if isinstance(source, str) and source == "synthetic":
        return None
    from .formats import ReadOptions, detect

    path = Path(source)
    options = ReadOptions(ProSegConfig(), rank_raters, fold, allow_outside_paths=allow_outside_paths)
    spacings = detect(path).spacings(path, options)
    if not spacings:
        return None
    return tuple(float(value) for value in np.median(np.asarray(spacings), axis=0))
