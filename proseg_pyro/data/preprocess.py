"""The one way from a scan or a dataset case to what the model sees, and back.

:class:`Preprocess` (built from a run's config) resamples slices in-plane to the training spacing
(SimpleITK: linear for images, nearest for annotations), fits them to the model and normalises
intensities. ``forward`` keeps the whole field of view by default (the networks are fully
convolutional: a slice is padded to a multiple of ``2**depth``, never cropped), or brings slices
to ``image_size`` (``whole=False``: the form training patches are drawn from); ``inverse`` maps the
model's output back onto the scan's exact grid (spacing, origin, direction). Dataset loading,
evaluation and scan inference all go through it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ProSegConfig
from .images import Geometry, resample
from .transforms import fit_to_size, normalise_slices, pad_slices, resize

SPACING_TOLERANCE = 1e-3  # relative difference of spacings treated as equal (no resampling)
SPACING_WARN_RATIO = 2.0  # in-plane spacing farther than this from training's gets a warning


@dataclass
class Prepared:
    """One scan as the model sees it: ``images`` (Z, C, h, w) float32, ``labels`` (Z, R, h, w) uint8
    or None; the ``scan`` grid it came from, the ``model`` grid after resampling (the scan's when no
    resampling), where the resampled slice lies in ``images`` (``region``: top, left, height, width;
    resize mode: the whole of it; None for slices cropped to a patch), ``notes``, one line per
    warning about this scan, and ``inside``: where in ``images`` the scan's pixels are (top, left,
    height, width), the rest being padding."""

    images: np.ndarray
    labels: np.ndarray | None
    scan: Geometry | None
    model: Geometry | None
    region: tuple[int, int, int, int] | None
    notes: list[str] = field(default_factory=list)
    inside: tuple[int, int, int, int] | None = None

    @property
    def model_voxel_ml(self) -> float:
        """Volume in mL of one voxel of the model grid."""
        return self.model.voxel_ml


@dataclass(frozen=True)
class Preprocess:
    """Resample in-plane to ``spacing`` (x, y mm; None: keep each scan's own), fit to the model
    (``resize="crop"``: pad to at least ``image_size`` and a multiple of ``multiple``; ``"resize"``:
    resize to ``image_size``), normalise each slice's channels by ``intensity``."""

    image_size: int
    multiple: int
    resize: str
    intensity: str
    spacing: tuple[float, float] | None

    @classmethod
    def of(cls, config: ProSegConfig) -> "Preprocess":
        return cls(config.image_size, 2 ** config.depth, config.resize, config.intensity,
                   None if config.spacing is None else (float(config.spacing[0]), float(config.spacing[1])))

    # --- spacing ----------------------------------------------------------------------------------
    def model_geometry(self, geometry: Geometry) -> Geometry:
        """The grid a scan on ``geometry`` is resampled to (itself when no resampling is needed)."""
        if self.spacing is None or np.allclose(geometry.in_plane_spacing, self.spacing, rtol=SPACING_TOLERANCE):
            return geometry
        return geometry.with_in_plane_spacing(self.spacing)

    def notes(self, geometry: Geometry) -> list[str]:
        """Warnings about a scan on ``geometry``: no training spacing to resample to, a spacing far
        from training's, slices too small to hold one training patch."""
        own = tuple(round(s, 4) for s in geometry.in_plane_spacing)
        notes = []
        if self.spacing is None:
            notes.append(f"the model records no training spacing: the scan is used at its own spacing {own} mm")
        else:
            ratios = np.abs(np.log(np.asarray(geometry.in_plane_spacing) / np.asarray(self.spacing)))
            if (ratios > np.log(SPACING_WARN_RATIO) + SPACING_TOLERANCE).any():
                notes.append(f"in-plane spacing {own} mm differs from the training spacing {self.spacing} mm by "
                             f"more than {SPACING_WARN_RATIO:g}x: resampled, but expect less reliable results")
        width, height = self.model_geometry(geometry).size[:2]
        if self.resize == "crop" and min(height, width) < self.image_size:
            notes.append(f"slices of {width}x{height} (at the model's spacing) are smaller than one training patch "
                         f"({self.image_size}x{self.image_size}): padded")
        return notes

    def resampled(self, volume: np.ndarray, source: Geometry, target: Geometry, labels: bool) -> np.ndarray:
        """``volume`` (Z, L, h, w) channel by channel from ``source`` onto ``target`` (a copy-free
        pass-through when the grids are the same)."""
        if target is source:
            return volume
        return np.stack([resample(volume[:, index], source, target, labels) for index in range(volume.shape[1])], 1)

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, images: np.ndarray, geometry: Geometry | None, labels: np.ndarray | None = None,
                whole: bool = True) -> Prepared:
        """``images`` (Z, C, H, W) (and ``labels`` (Z, R, H, W)) on ``geometry`` as the model sees them
        (no geometry: no resampling, no notes): over the whole field of view, or with ``whole=False``
        brought to ``image_size`` (centre crop/pad or resize; ``region`` None: a crop cannot be undone)."""
        images = images.astype(np.float32, copy=False)
        model = None if geometry is None else self.model_geometry(geometry)
        if geometry is not None:
            images = self.resampled(images, geometry, model, labels=False)
            labels = None if labels is None else self.resampled(labels, geometry, model, labels=True)
        notes = [] if geometry is None else self.notes(geometry)
        if not whole:
            inside = self._fitted_inside(*images.shape[-2:])
            images, labels = fit_to_size(images, labels, self.image_size, self.resize)
            return Prepared(normalise_slices(images, self.intensity), labels, geometry, model, None, notes, inside)
        if self.resize == "resize":
            images = resize(images, self.image_size, labels=False)
            labels = None if labels is None else resize(labels, self.image_size, labels=True)
            region = (0, 0, self.image_size, self.image_size)
        images = normalise_slices(images, self.intensity)
        if self.resize == "crop":
            images, labels, region = self._pad(images, labels)
        return Prepared(images, labels, geometry, model, region, notes, region)

    def _fitted_inside(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Where a slice of ``height`` x ``width`` lies once brought to ``image_size`` (centre crop or
        pad: the padded part is not image; resize: all of it)."""
        if self.resize == "resize":
            return 0, 0, self.image_size, self.image_size
        (top, rows), (left, columns) = (((self.image_size - length) // 2, length) if length < self.image_size
                                        else (0, self.image_size) for length in (height, width))
        return top, left, rows, columns

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of a slice of ``height`` x ``width`` padded to at least ``image_size`` and a
        multiple of ``multiple``."""
        return tuple(max(self.image_size, -(-length // self.multiple) * self.multiple) for length in (height, width))

    def output_size(self, shape: tuple[int, ...], geometry: Geometry | None, whole: bool) -> tuple[int, int]:
        """(height, width) of the slices that a case of ``shape`` (..., H, W) on ``geometry`` becomes:
        ``image_size`` (training's form, or resize mode), else its whole field of view on the model
        grid, padded (computed before any array is made)."""
        if not whole or self.resize == "resize":
            return self.image_size, self.image_size
        if geometry is None:
            return self.padded_size(*shape[-2:])
        width, height = self.model_geometry(geometry).size[:2]
        return self.padded_size(height, width)

    def _pad(self, images: np.ndarray, labels: np.ndarray | None):
        """Pad (Z, C, H, W) to at least ``image_size`` and a multiple of ``multiple`` on both axes,
        centred, with each slice channel's minimum (labels with background), as training pads."""
        height, width = images.shape[-2:]
        sizes = self.padded_size(height, width)
        before = [(size - length) // 2 for size, length in zip(sizes, (height, width))]
        widths = [(0, 0), (0, 0)] + [(b, size - length - b) for b, size, length in zip(before, sizes, (height, width))]
        padded, labels = pad_slices(images, labels, widths)
        return padded.astype(np.float32), labels, (before[0], before[1], height, width)

    # --- inverse ---------------------------------------------------------------------------------
    def unfit(self, maps: torch.Tensor, prepared: Prepared) -> torch.Tensor:
        """Maps (..., h, w) on the model's input back to the model grid (..., H, W): the padding cut
        off, or (resize mode) resized, bilinearly (nearest for integer labels)."""
        width, height = prepared.model.size[:2]
        if self.resize == "resize":
            mode = "bilinear" if maps.is_floating_point() else "nearest"
            flat = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=(height, width), mode=mode,
                                 **({"align_corners": False} if mode == "bilinear" else {}))
            return flat.reshape(*maps.shape[:-2], height, width).to(maps.dtype)
        top, left, rows, columns = prepared.region
        return maps[..., top:top + rows, left:left + columns]

    def to_scan(self, maps: np.ndarray, prepared: Prepared, labels: bool) -> np.ndarray:
        """Maps (Z, L, H, W) on the model grid resampled onto the scan's grid (Z, L, H0, W0):
        linear for probabilities, nearest for ``labels``."""
        return self.resampled(maps, prepared.model, prepared.scan, labels)

    def inverse(self, maps: np.ndarray, prepared: Prepared, labels: bool = False) -> np.ndarray:
        """Maps (Z, L, h, w) on the model's input -> (Z, L, H0, W0) on the scan's exact grid."""
        unfitted = self.unfit(torch.from_numpy(np.ascontiguousarray(maps)), prepared).numpy()
        return self.to_scan(unfitted, prepared, labels)
