"""Whole scans in, segmentations out, on the scan's own voxel grid.

A scan's channels are read and checked, brought to the model by :class:`Preprocess` (resampled
to the training spacing, padded to fit the networks over the whole field of view, normalised as in
training), sampled a batch of slices at a time with the vectorised samplers, and mapped back onto
the scan's exact grid (spacing, origin, direction) by the preprocessing's inverse.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import inference
from .config import ProSegConfig
from .data.images import Geometry, read_channels, read_label, write_image
from .data.preprocess import Prepared, Preprocess
from .errors import DataError, ProSegError
from .guide import ProSegGuide
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
        return self.geometry.voxel_ml


def read_scan(paths: list[str | os.PathLike], in_channels: int | None = None) -> Scan:
    """Read one scan from its channel files (NIfTI, MHA, NRRD, a DICOM series folder, ...).

    Channels must share one grid and hold finite values; with ``in_channels`` the channel count
    (files times pixel components) must match it. Bad input raises :class:`DataError`.
    """
    paths = [Path(path) for path in paths]
    if not paths:
        raise ProSegError("no image given")
    images, geometry = read_channels(paths)
    if in_channels is not None and images.shape[1] != in_channels:
        raise DataError(paths[0], f"the scan has {images.shape[1]} channel(s) but the checkpoint expects "
                                  f"{in_channels} (give one --image per channel)")
    return Scan(images, geometry, paths)


def read_annotation(path: str | os.PathLike, scan: Scan, num_classes: int) -> np.ndarray:
    """An annotation of ``scan`` on its grid, labels checked against ``num_classes``: (Z, H, W) uint8."""
    return read_label(Path(path), scan.paths[0], scan.geometry, [str(label) for label in range(num_classes)])


def prepare_scan(scan: Scan, config: ProSegConfig, annotation: np.ndarray | None = None) -> Prepared:
    """The scan as the model sees it (whole field of view); an ``annotation`` (Z, H, W) comes along
    as the one label channel."""
    labels = None if annotation is None else annotation[:, None]
    return Preprocess.of(config).forward(scan.images, scan.geometry, labels)


@dataclass
class StyleMaps:
    """One style's result on the scan grid (Z, H, W): the most likely ``mask`` (uint8 class of the
    mean class probabilities), the mean foreground ``probability`` and its ``entropy`` (nats, of the
    mean class probabilities), both float32; ``sample_voxels`` (S,) float each sample mask's
    foreground volume in scan voxels; ``samples`` (S, Z, H, W) uint8 every sample's mask (prior only, else None)."""

    name: str
    mask: np.ndarray
    probability: np.ndarray
    entropy: np.ndarray
    sample_voxels: np.ndarray
    samples: np.ndarray | None = None


@torch.no_grad()
def segment_scan(model: ProSegModel, guide: ProSegGuide, scan: Scan, raters: list[int] | None,
                 num_samples: int = 50, device: torch.device | str = "cpu", progress: bool = False,
                 max_elements: int = 2 ** 25, prepared: Prepared | None = None) -> list[StyleMaps]:
    """Sample every slice of ``scan``, every pixel of it, in the style of each of ``raters`` (slot
    indices, training or enrolled: one :class:`StyleMaps` per rater, named after it), or with
    ``raters=None`` from the prior (one :class:`StyleMaps` named ``"prior"``, with its samples).
    Slices go through the vectorised samplers in batches bounded by ``max_elements``; ``prepared``
    is the scan through :func:`prepare_scan` when the caller has it already."""
    config = model.config
    preprocess = Preprocess.of(config)
    prepared = prepared or preprocess.forward(scan.images, scan.geometry)
    images = torch.as_tensor(prepared.images, device=device)
    depth, _, padded_height, padded_width = images.shape
    width, height = prepared.model.size[:2]
    styles, classes = 1 if raters is None else len(raters), config.num_classes
    pixels = max(height * width, padded_height * padded_width)
    batch = max(1, max_elements // (num_samples * styles * classes * pixels))
    chunk = max(1, max_elements // (batch * styles * classes * pixels))  # samples mapped at once
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
            grid = preprocess.unfit(probs[first:first + chunk].movedim(-1, -3), prepared)
            total += grid.sum(0)
            labels = grid.argmax(-3)  # (c, b, N, H, W)
            voxels[first:first + chunk] += (labels > 0).sum((1, 3, 4)).cpu().numpy()
            if samples is not None:
                samples[first:first + chunk, start:stop] = labels[:, :, 0].cpu().numpy()
        mean[start:stop] = (total / num_samples).cpu().numpy()
    # the mean class probabilities go back to the scan grid; masks and entropy are taken there
    mean = preprocess.to_scan(mean.reshape(depth, styles * classes, height, width), prepared, labels=False)
    mean = mean.reshape(depth, styles, classes, *mean.shape[-2:])
    entropy = -(mean * np.log(np.maximum(mean, 1e-12))).sum(2)  # (Z, N, H, W)
    if samples is not None:
        samples = preprocess.to_scan(samples.transpose(1, 0, 2, 3), prepared, labels=True).transpose(1, 0, 2, 3)
    scale = prepared.model_voxel_ml / scan.voxel_ml  # sample volumes are counted on the model grid
    names = ["prior"] if raters is None else [config.slot_names()[rater] for rater in raters]
    return [StyleMaps(name, mean[:, i].argmax(1).astype(np.uint8), 1.0 - mean[:, i, 0], entropy[:, i],
                      voxels[:, i] * scale, samples) for i, name in enumerate(names)]


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
    write_image(maps.mask, scan.geometry, files["mask"])
    write_image(maps.probability, scan.geometry, files["probability"])
    write_image(maps.entropy, scan.geometry, files["entropy"])
    for index, sample in enumerate(maps.samples if maps.samples is not None else []):
        write_image(sample, scan.geometry, files[f"sample_{index}"])
    volumes = maps.sample_voxels * scan.voxel_ml
    return {"volume_ml": float((maps.mask > 0).sum() * scan.voxel_ml),
            "sample_volume_ml": {"mean": float(volumes.mean()), "std": float(volumes.std()),
                                 "min": float(volumes.min()), "p05": float(np.percentile(volumes, 5)),
                                 "median": float(np.median(volumes)), "p95": float(np.percentile(volumes, 95)),
                                 "max": float(volumes.max())},
            "files": {kind: str(path) for kind, path in files.items() if not kind.startswith("sample_")}
            | ({"samples": str(files["sample_0"].parent)} if "sample_0" in files else {})}
