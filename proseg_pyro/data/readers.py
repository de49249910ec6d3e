"""Low-level readers: SimpleITK images and DICOM series, LIDC-style pickles, NPC-style h5 folders.

Every reader checks what it reads and raises :class:`~proseg_pyro.errors.DataError` naming the
file. The dataset readers turn raw cases (:class:`Case`) into a preprocessed :class:`SliceSet`
with :func:`cases_to_slices`, the one place where preprocessing happens.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np

from ..config import ProSegConfig
from ..errors import ConfigError, DataError
from ..limits import check_archive_size, require_memory, require_regular_file
from .images import Geometry, read_image
from .preprocess import Preprocess
from .slice_store import SliceWriter, open_store
from .slices import SliceSet

# h5py is imported by the reader that needs it (and SimpleITK by .images), so that a process that
# trains from memory or from the slice cache does not carry them.

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 grey of RGB
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


# --- shared checks and assembly -------------------------------------------------------------------
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


def read_channels(paths: list[Path], grey: bool = False) -> tuple[np.ndarray, Geometry]:
    """One scan's channel files read as ``images`` (Z, C, H, W) float32 (C: files times pixel
    components; ``grey``: RGB(A) files count as one grey channel) on their shared :class:`Geometry`.
    Channels on another grid than the first, or holding NaN or Inf, raise DataError."""
    channels, geometry = [], None
    for path in paths:
        array, grid = read_image(path)
        check_finite(array, path)
        if geometry is None:
            geometry = grid
        elif problem := geometry.mismatch(grid):
            raise DataError(path, f"channel grid does not match {paths[0].name}: {problem}")
        if grey and array.shape[1] in (3, 4):
            array = np.tensordot(array[:, :3].astype(np.float32), LUMA, axes=([1], [0]))[:, None]
        channels.append(array.astype(np.float32))
    return np.concatenate(channels, axis=1), geometry


def read_label(path: Path, image: Path, geometry: Geometry, classes: list[str]) -> np.ndarray:
    """An annotation (Z, H, W) uint8 of the scan whose first channel is ``image`` on ``geometry``:
    a scalar label image on the same grid with labels in ``0 .. len(classes) - 1``, else DataError."""
    array, grid = read_image(path)
    if problem := geometry.mismatch(grid):
        raise DataError(path, f"annotation grid does not match the image {image.name}: {problem}")
    if array.shape[1] != 1:
        raise DataError(path, f"annotation has {array.shape[1]} components; expected a scalar label image")
    return check_labels(array[:, 0], classes, path)


def subject_splits(subjects: Iterable[str], fractions: tuple[float, float, float] = SPLIT_FRACTIONS
                   ) -> dict[str, str]:
    """Assign each subject to train/val/test by ``fractions``, deterministically: subjects are
    ordered by a hash of their name, so the result does not depend on file or manifest order."""
    ordered = sorted(set(subjects), key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    n_train = int(round(fractions[0] * len(ordered)))
    n_val = int(round(fractions[1] * len(ordered)))
    return {name: "train" if i < n_train else "val" if i < n_train + n_val else "test"
            for i, name in enumerate(ordered)}


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

    Each case is resampled in-plane to ``config.spacing`` (cases with a geometry) and each slice's
    channels normalised by ``config.intensity``; slices are brought to ``config.image_size``
    (:meth:`Preprocess.training_slices`: crop/pad or resize), or with ``whole`` keep their whole
    field of view (:meth:`Preprocess.forward`), padded at the bottom and right to the largest
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
        if whole:
            prepared = preprocess.forward(case.images, case.geometry, case.labels)
            image, label = prepared.images, prepared.labels
        else:
            image, label = preprocess.training_slices(case.images, case.labels, case.geometry)
        writer.add(case.case_id, case.subject, case.split, image, label, case.mask)
    writer.finish()


# --- LIDC-IDRI style pickles ----------------------------------------------------------------------
RANK_MODES = ("area", "keep")
NUM_FOLDS = 4
LIDC_CLASSES = ["background", "foreground"]


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as pickle protocols 0-2 use it to store bytes (latin-1 only)."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing to encode {type(text).__name__} as {encoding!r}")
    return text.encode("latin1")


def _numpy_reconstructors() -> dict[tuple[str, str], Any]:
    """The globals a pickle of numpy arrays needs (numpy 1.x and 2.x module names), nothing else."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_bytes}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # pickle protocol 5
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers, strings, numbers and numpy arrays; refuses every other global."""

    allowed = _numpy_reconstructors()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def read_pickle(path: str | os.PathLike) -> Any:
    """Unpickle a ``.pkl``/``.pickle`` file, or the one pickle inside a ``.zip``, with the restricted
    unpickler (a pickle that needs any other global raises DataError before running any code)."""
    path = require_regular_file(path)
    check_archive_size(path)
    try:
        if path.suffix.lower() != ".zip":
            with open(path, "rb") as handle:
                return _unpickle(handle, path)
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist()
                       if m.lower().endswith((".pkl", ".pickle")) and not m.startswith("__MACOSX")]
            if len(members) != 1:
                raise DataError(path, f"zip holds {len(members)} pickles (.pkl/.pickle); expected one")
            with archive.open(members[0]) as handle:
                return _unpickle(handle, path)
    except zipfile.BadZipFile:
        raise DataError(path, "not a valid zip file") from None


def _unpickle(handle: IO[bytes], path: Path) -> Any:
    try:
        return _ArrayUnpickler(handle).load()
    except pickle.UnpicklingError as err:
        raise DataError(path, f"unsafe or corrupt pickle ({err})") from None
    except Exception as err:  # untrusted bytes: any failure of the unpickler is bad input
        raise DataError(path, f"not a readable pickle ({type(err).__name__}: {err})") from None


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
    and ``store``: see :func:`cases_to_slices`).
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


# --- NPC-style h5 (MMIS-2024) ---------------------------------------------------------------------
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
    (:func:`subject_splits`). Returns slices preprocessed by ``config`` (``whole`` and ``store``: see
    :func:`cases_to_slices`).
    """
    folder = Path(folder)
    files = sorted(folder.rglob("*.h5"))
    if not files:
        raise DataError(folder, "folder holds no .h5 files")
    subjects = [re.sub(r"[_-]slice[_-]?\d+$", "", file.stem) for file in files]
    folder_splits = [_folder_split(file.relative_to(folder)) for file in files]
    assigned = subject_splits(s for s, split in zip(subjects, folder_splits) if not split)

    def cases() -> Iterable[Case]:
        for file, subject, split in zip(files, subjects, folder_splits):
            images, labels, mask = read_npc_case(file)
            yield Case(file.relative_to(folder).with_suffix("").as_posix(), subject, split or assigned[subject],
                       images, labels, mask)

    return cases_to_slices(cases(), NPC_RATERS, NPC_CLASSES, folder.name, config, folder, whole, store)


def _folder_split(relative: Path) -> str:
    for part in relative.parts[:-1]:
        for split in SPLITS:
            if part.lower().startswith(split):
                return split
    return ""
