"""Whole scans in, segmentations out, on the scan's own voxel grid.

A scan's channels are read and checked, its slices (the slowest axis) preprocessed exactly as
training preprocesses them (:func:`~proseg_pyro.data.readers.cases_to_slices`), sampled a batch
of slices at a time with the vectorised samplers, mapped back onto the scan's grid (undoing the
crop/pad or resize) and written with the scan's spacing, origin and direction.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import inference
from .config import ProSegConfig
from .data.readers import Case, Geometry, cases_to_slices, check_finite, check_labels, read_image
from .data.slices import SliceSet
from .data.transforms import crop_or_pad
from .enrol import rater_names
from .errors import DataError, ProSegError
from .guide import ProSegGuide
from .io_utils import atomic_path
from .model import ProSegModel


@dataclass
class Scan:
    """``images`` (Z, C, H, W) float32 in the files' voxel order (Z = 1 for a 2D image), the grid's
    :class:`Geometry` and the channel files."""

    images: np.ndarray
    geometry: Geometry
    paths: list[Path]

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in mL (a 2D image counts as 1 mm thick)."""
        return math.prod(self.geometry.spacing) / 1000.0


def read_scan(paths: list[str | os.PathLike], in_channels: int | None = None) -> Scan:
    """Read one scan from its channel files (NIfTI, MHA, NRRD, a DICOM series folder, ...).

    Channels must share one grid and hold finite values; with ``in_channels`` the channel count
    (files times pixel components) must match it. Bad input raises :class:`DataError`.
    """
    paths = [Path(path) for path in paths]
    if not paths:
        raise ProSegError("no image given")
    channels, geometry = [], None
    for path in paths:
        array, grid = read_image(path)
        check_finite(array, path)
        if geometry is None:
            geometry = grid
        elif problem := geometry.mismatch(grid):
            raise DataError(path, f"channel grid does not match {paths[0].name}: {problem}")
        channels.append(array.astype(np.float32))
    images = np.concatenate(channels, axis=1)
    if in_channels is not None and images.shape[1] != in_channels:
        raise DataError(paths[0], f"the scan has {images.shape[1]} channel(s) but the checkpoint expects "
                                  f"{in_channels} (give one --image per channel)")
    return Scan(images, geometry, paths)


def read_annotation(path: str | os.PathLike, scan: Scan, num_classes: int) -> np.ndarray:
    """An annotation of ``scan`` on its grid, labels checked against ``num_classes``: (Z, H, W) int16."""
    array, grid = read_image(path)
    if problem := scan.geometry.mismatch(grid):
        raise DataError(path, f"annotation grid does not match the image {scan.paths[0].name}: {problem}")
    if array.shape[1] != 1:
        raise DataError(path, f"annotation has {array.shape[1]} components; expected a scalar label image")
    return check_labels(array[:, 0], [str(label) for label in range(num_classes)], path)


def model_slices(scan: Scan, config: ProSegConfig, annotation: np.ndarray | None = None) -> SliceSet:
    """The scan's slices as the model sees them, through the training preprocessing: images
    (Z, C, s, s) with s = ``config.image_size``; an ``annotation`` (Z, H, W) comes along as rater 0."""
    height, width = scan.images.shape[-2:]
    labels = (np.zeros((len(scan.images), 0, height, width), np.int16) if annotation is None
              else annotation[:, None])
    raters = ["annotation"] if annotation is not None else []
    case = Case(scan.paths[0].name, scan.paths[0].name, "", scan.images, labels, np.ones(len(raters), bool))
    return cases_to_slices([case], raters, [str(k) for k in range(config.num_classes)], "scan", config, scan.paths[0])


def to_scan_grid(maps: torch.Tensor, height: int, width: int, config: ProSegConfig) -> torch.Tensor:
    """Undo the preprocessing's fit to ``config.image_size``: class probabilities (..., K, s, s)
    -> (..., K, height, width) on the scan's grid.

    ``resize``: bilinear back. ``crop``: every scan pixel the crop kept gets its value back (found by
    sending the pixel indices through the same ``crop_or_pad``); pixels it cut off are background.
    """
    if config.resize == "resize":
        flat = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]), size=(height, width), mode="bilinear",
                             align_corners=False)
        return flat.reshape(*maps.shape[:-2], height, width)
    source = crop_or_pad(np.arange(height * width).reshape(height, width), config.image_size, pad_value=-1).ravel()
    kept = torch.from_numpy(source >= 0).to(maps.device)
    out = maps.new_zeros(*maps.shape[:-2], height * width)
    out[..., 0, :] = 1.0
    out[..., torch.from_numpy(source[source >= 0]).to(maps.device)] = maps.flatten(-2)[..., kept]
    return out.unflatten(-1, (height, width))


@dataclass
class StyleMaps:
    """One style's result on the scan grid (Z, H, W): the most likely ``mask`` (uint8 class of the
    mean class probabilities), the mean foreground ``probability`` and its ``entropy`` (nats, of the
    mean class probabilities), both float32; ``sample_voxels`` (S,) foreground voxels of each
    sample's mask; ``samples`` (S, Z, H, W) uint8 every sample's mask (prior only, else None)."""

    name: str
    mask: np.ndarray
    probability: np.ndarray
    entropy: np.ndarray
    sample_voxels: np.ndarray
    samples: np.ndarray | None = None


@torch.no_grad()
def segment_scan(model: ProSegModel, guide: ProSegGuide, scan: Scan, raters: list[int] | None,
                 num_samples: int = 50, device: torch.device | str = "cpu", progress: bool = False,
                 max_elements: int = 2 ** 25) -> list[StyleMaps]:
    """Sample every slice of ``scan`` in the style of each of ``raters`` (slot indices, training or
    enrolled: one :class:`StyleMaps` per rater, named after it), or with ``raters=None`` from the
    prior (one :class:`StyleMaps` named ``"prior"``, with its samples). Slices go through the
    vectorised samplers in batches bounded by ``max_elements``."""
    config = model.config
    images = torch.as_tensor(model_slices(scan, config).images, device=device)
    depth, _, height, width = scan.images.shape
    styles, classes = 1 if raters is None else len(raters), config.num_classes
    pixels = max(height * width, config.image_size ** 2)
    batch = max(1, max_elements // (num_samples * styles * classes * pixels))
    chunk = max(1, max_elements // (batch * styles * classes * height * width))  # samples mapped at once
    mean = np.empty((depth, styles, classes, height, width), np.float32)
    voxels = np.zeros((num_samples, styles), np.int64)
    samples = np.empty((num_samples, depth, height, width), np.uint8) if raters is None else None
    for start in tqdm(range(0, depth, batch), desc="sample", unit="batch", disable=not progress, leave=False):
        stop = min(start + batch, depth)
        x = images[start:stop]
        probs = (inference.prior(model, guide, x, num_samples, return_class_probs=True)[:, :, None]
                 if raters is None else
                 inference.personalised(model, guide, x, raters, num_samples, return_class_probs=True))
        total = torch.zeros(stop - start, styles, classes, height, width, device=probs.device)
        for first in range(0, num_samples, chunk):
            grid = to_scan_grid(probs[first:first + chunk].movedim(-1, -3), height, width, config)
            total += grid.sum(0)
            labels = grid.argmax(-3)  # (c, b, N, H, W)
            voxels[first:first + chunk] += (labels > 0).sum((1, 3, 4)).cpu().numpy()
            if samples is not None:
                samples[first:first + chunk, start:stop] = labels[:, :, 0].cpu().numpy()
        mean[start:stop] = (total / num_samples).cpu().numpy()
    entropy = -(mean * np.log(np.maximum(mean, 1e-12))).sum(2)  # (Z, N, H, W)
    names = ["prior"] if raters is None else [rater_names(config)[rater] for rater in raters]
    return [StyleMaps(name, mean[:, i].argmax(1).astype(np.uint8), 1.0 - mean[:, i, 0], entropy[:, i],
                      voxels[:, i], samples) for i, name in enumerate(names)]


def write_volume(array: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> None:
    """Write ``array`` (Z, H, W) with ``geometry``'s spacing, origin and direction, atomically."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array if len(geometry.size) == 3 else array[0]))
    if tuple(image.GetSize()) != geometry.size:
        raise ValueError(f"array of grid {image.GetSize()} for a scan of grid {geometry.size}")
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, tmp, useCompression=True)


def style_files(out_dir: Path, stem: str, num_samples: int | None = None) -> dict[str, Path]:
    """Output files of one style: ``mask``, ``probability``, ``entropy`` and, given
    ``num_samples``, ``sample_0`` ... (one mask per sample, in ``OUT/<stem>_samples/``)."""
    files = {kind: out_dir / f"{stem}_{kind}.nii.gz" for kind in ("mask", "probability", "entropy")}
    for index in range(num_samples or 0):
        files[f"sample_{index}"] = out_dir / f"{stem}_samples" / f"sample_{index:03d}.nii.gz"
    return files


def write_style(maps: StyleMaps, scan: Scan, files: dict[str, Path]) -> dict:
    """Write one style's volumes to ``files`` (as :func:`style_files`) and return its summary:
    the most likely mask's foreground volume and the spread of the samples' volumes, in mL."""
    write_volume(maps.mask, scan.geometry, files["mask"])
    write_volume(maps.probability, scan.geometry, files["probability"])
    write_volume(maps.entropy, scan.geometry, files["entropy"])
    for index, sample in enumerate(maps.samples if maps.samples is not None else []):
        write_volume(sample, scan.geometry, files[f"sample_{index}"])
    volumes = maps.sample_voxels * scan.voxel_ml
    return {"volume_ml": float((maps.mask > 0).sum() * scan.voxel_ml),
            "sample_volume_ml": {"mean": float(volumes.mean()), "std": float(volumes.std()),
                                 "min": float(volumes.min()), "p05": float(np.percentile(volumes, 5)),
                                 "median": float(np.median(volumes)), "p95": float(np.percentile(volumes, 95)),
                                 "max": float(volumes.max())},
            "files": {kind: str(path) for kind, path in files.items() if not kind.startswith("sample_")}
            | ({"samples": str(files["sample_0"].parent)} if "sample_0" in files else {})}
