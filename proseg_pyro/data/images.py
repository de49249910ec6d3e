"""SimpleITK images with their physical grid: read (files, DICOM series, a scan's channels, its
annotations), write, and resample in-plane. Every reader and writer of image files goes through here.

SimpleITK (~90 MB resident) is imported inside the functions that need it, so that a process that
trains from memory or from the slice cache does not carry it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..io_utils import atomic_path
from ..limits import require_memory, require_regular_file
from .checks import check_finite, check_labels
from .nifti import is_nifti, nifti_has_nonfinite

if TYPE_CHECKING:
    import SimpleITK as sitk

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 grey of RGB


@dataclass(frozen=True)
class Geometry:
    """Physical grid of an image in SimpleITK order (x, y[, z]).

    ``size`` voxels per axis, ``spacing`` and ``origin`` in mm, ``direction`` the row-major
    flattened direction-cosine matrix.
    """

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    @classmethod
    def unit(cls, shape: tuple[int, ...]) -> "Geometry":
        """A 1 mm grid at the origin for an array of ``shape`` (Z, H, W)."""
        size = tuple(reversed(shape))
        return cls(size, (1.0,) * len(size), (0.0,) * len(size), tuple(np.eye(len(size)).ravel().tolist()))

    @property
    def in_plane_spacing(self) -> tuple[float, float]:
        """(x, y) spacing in mm: the axes of one slice."""
        return float(self.spacing[0]), float(self.spacing[1])

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL (a 2D image counts as 1 mm thick)."""
        return float(np.prod(self.spacing)) / 1000.0

    def with_in_plane_spacing(self, spacing: tuple[float, float]) -> "Geometry":
        """The grid covering the same field of view with slices resampled to ``spacing`` (x, y) mm:
        the slice axis and the direction are kept, the first voxel's centre moves by half the change
        of voxel size so that the field's edges stay in place."""
        size = [max(1, int(round(n * old / new))) for n, old, new in zip(self.size[:2], self.spacing, spacing)]
        new_spacing = (*spacing, *self.spacing[2:])
        dimension = len(self.size)
        shift = np.zeros(dimension)
        shift[:2] = [(new - old) / 2 for old, new in zip(self.spacing, spacing)]
        origin = np.asarray(self.origin) + np.asarray(self.direction).reshape(dimension, dimension) @ shift
        return Geometry((*size, *self.size[2:]), tuple(float(s) for s in new_spacing),
                        tuple(origin.tolist()), self.direction)

    def mismatch(self, other: "Geometry", rtol: float = 1e-4, atol: float = 1e-3) -> str | None:
        """How ``other`` differs from this grid (one phrase), or None if they match within tolerance."""
        if other.size != self.size:
            return f"size {other.size} != {self.size}"
        for name in ("spacing", "origin", "direction"):
            theirs, ours = getattr(other, name), getattr(self, name)
            if not np.allclose(theirs, ours, rtol=rtol, atol=atol):
                return f"{name} {_rounded(theirs)} != {_rounded(ours)}"
        return None


def _rounded(values: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(float(value), 4) for value in values)


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """Read an image file SimpleITK understands (NIfTI, MHA, NRRD, PNG, TIFF, DICOM) or a folder
    holding one DICOM series.

    Returns ``array`` (Z, K, Y, X) in the file's voxel order (no reorientation or resampling:
    slice ``z`` is SimpleITK's z index, numpy axis 0; Z = 1 for 2D images) with K pixel
    components (1 for scalar images, 3 for RGB), and the image's :class:`Geometry`.
    """
    import SimpleITK as sitk

    path = require_regular_file(path, folders=True)
    try:
        image = _read_dicom_series(path) if path.is_dir() else _read_checked_image(path)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise DataError(path, f"SimpleITK cannot read it ({lines[-1] if lines else 'unknown error'})") from None
    if image.GetDimension() not in (2, 3):
        raise DataError(path, f"{image.GetDimension()}D images are not supported (2D or 3D only)")
    array = sitk.GetArrayFromImage(image)  # (Z,) Y, X (, K)
    if image.GetNumberOfComponentsPerPixel() == 1:
        array = array[..., None]
    if image.GetDimension() == 2:
        array = array[None]
    return np.moveaxis(array, -1, 1), Geometry.of(image)


def _read_checked_image(path: Path) -> sitk.Image:
    """The image at ``path``, after its header showed real pixels that fit the memory budget."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if "complex" in pixel:
        raise DataError(path, f"{pixel} pixels are not supported (real-valued images only)")
    voxels = math.prod(reader.GetSize()) * reader.GetNumberOfComponents()
    require_memory(voxels * (np.dtype(np.float64).itemsize + np.dtype(np.float32).itemsize), path,
                   f"reading an image of {reader.GetSize()} voxels")
    image = reader.Execute()
    if is_nifti(path) and nifti_has_nonfinite(path):  # SimpleITK reads these voxels as 0
        raise DataError(path, "image contains NaN or Inf values")
    return image


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


def read_geometry(path: str | os.PathLike) -> Geometry:
    """The :class:`Geometry` of an image file from its header alone (a DICOM folder is read whole)."""
    import SimpleITK as sitk

    path = require_regular_file(path, folders=True)
    if path.is_dir():
        return read_image(path)[1]
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return read_image(path)[1]  # raises the DataError that names the problem
    return Geometry(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                    tuple(reader.GetDirection()))


def _read_dicom_series(folder: Path) -> sitk.Image:
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if len(series) != 1:
        found = "no DICOM series" if not series else f"{len(series)} DICOM series"
        raise DataError(folder, f"folder holds {found}; expected exactly one")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    return reader.Execute()


def _to_sitk(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """``array`` (Z, H, W) as a SimpleITK image on ``geometry`` (2D geometries take slice 0)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array if len(geometry.size) == 3 else array[0]))
    if tuple(image.GetSize()) != geometry.size:
        raise ValueError(f"array of grid {image.GetSize()} for an image of grid {geometry.size}")
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def write_image(array: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> None:
    """Write ``array`` (Z, H, W) with ``geometry``'s spacing, origin and direction, atomically."""
    import SimpleITK as sitk

    image = _to_sitk(array, geometry)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, tmp, useCompression=True)


def resample(array: np.ndarray, source: Geometry, target: Geometry, labels: bool) -> np.ndarray:
    """``array`` (Z, H, W) on ``source`` resampled onto ``target`` (same slices, any in-plane grid):
    linear for images and maps, nearest neighbour for ``labels``; points beyond the source's last
    voxel centres take the nearest voxel's value. Returns (Z, H', W') of ``array``'s dtype."""
    import SimpleITK as sitk

    dtype = array.dtype
    image = _to_sitk(array.astype(np.float32) if not labels else array, source)
    out = sitk.Resample(image, list(target.size), sitk.Transform(),
                        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear, list(target.origin),
                        list(target.spacing), list(target.direction), 0.0, sitk.sitkUnknown, True)
    result = sitk.GetArrayFromImage(out)
    return (result if len(target.size) == 3 else result[None]).astype(dtype, copy=False)
