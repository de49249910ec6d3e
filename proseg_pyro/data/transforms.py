"""Preprocessing (size, intensity) and joint augmentation of an image with all raters' masks."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def normalise_intensity(image: np.ndarray, mode: str = "zscore") -> np.ndarray:
    """Per-image intensity normalisation of ``image`` (C, H, W), channel by channel.

    ``"zscore"`` (MRI): zero mean, unit std; ``"unit"`` (CT crops): min-max to [0, 1].
    Constant channels become zeros.
    """
    image = image.astype(np.float32, copy=False)
    axes = tuple(range(1, image.ndim))
    if mode == "zscore":
        mean = image.mean(axis=axes, keepdims=True)
        std = image.std(axis=axes, keepdims=True)
        return ((image - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    if mode == "unit":
        low = image.min(axis=axes, keepdims=True)
        span = image.max(axis=axes, keepdims=True) - low
        return ((image - low) / np.where(span > 0, span, 1.0)).astype(np.float32)
    raise ValueError(f"unknown intensity mode {mode!r}")


def normalise_slices(images: np.ndarray, mode: str) -> np.ndarray:
    """``images`` (S, C, H, W) with each slice's channels normalised separately by ``mode``."""
    return normalise_intensity(images.reshape(-1, 1, *images.shape[-2:]), mode).reshape(images.shape)


def pad_slices(images: np.ndarray, labels: np.ndarray | None, widths: list[tuple[int, int]]
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """``images`` (Z, C, H, W) padded by ``widths`` (``numpy.pad``'s, one pair per axis) with each
    slice channel's minimum, and ``labels`` (Z, R, H, W, or None) with background."""
    low = images.min(axis=(-2, -1), keepdims=True)
    return np.pad(images - low, widths) + low, None if labels is None else np.pad(labels, widths)


def crop_or_pad(array: np.ndarray, size: int, pad_value: float = 0.0) -> np.ndarray:
    """Centre crop or pad the last two axes of ``array`` (..., H, W) to (..., size, size)."""
    out = array
    for axis in (-2, -1):
        length = out.shape[axis]
        if length > size:
            start = (length - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
        elif length < size:
            before = (size - length) // 2
            widths = [(0, 0)] * out.ndim
            widths[axis] = (before, size - length - before)
            out = np.pad(out, widths, constant_values=pad_value)
    return out


def resize(array: np.ndarray, size: int, labels: bool) -> np.ndarray:
    """Resize the last two axes of ``array`` (..., H, W) to (size, size): bilinear, nearest for labels."""
    lead = array.shape[:-2]
    flat = torch.from_numpy(np.ascontiguousarray(array.reshape(-1, 1, *array.shape[-2:]))).float()
    if labels:
        out = F.interpolate(flat, size=(size, size), mode="nearest").round().long().numpy()
        return out.reshape(*lead, size, size).astype(array.dtype)
    out = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False).numpy()
    return out.reshape(*lead, size, size).astype(np.float32)


def fit_to_size(image: np.ndarray, labels: np.ndarray, size: int, method: str = "crop"):
    """Bring ``image`` (C, H, W) and ``labels`` (R, H, W) to ``size`` x ``size`` the same way."""
    if method == "crop":
        return crop_or_pad(image, size, float(image.min()) if image.size else 0.0), crop_or_pad(labels, size, 0)
    if method == "resize":
        return resize(image, size, labels=False), resize(labels, size, labels=True)
    raise ValueError(f"unknown resize method {method!r}")


class JointAugment:
    """Random flips, 90-degree rotations, a small rotation and Gaussian noise, applied to a batch.

    The same geometric transform hits the image (B, C, H, W) and every rater's mask (B, R, H, W) of
    one item, so masks stay aligned and integer (nearest-neighbour resampling).
    """

    def __init__(self, flip: bool = True, rot90: bool = True, max_degrees: float = 10.0,
                 noise_std: float = 0.05):
        self.flip = flip
        self.rot90 = rot90
        self.max_degrees = max_degrees
        self.noise_std = noise_std

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None):
        batch = images.shape[0]
        device = images.device
        rand = lambda *shape: torch.rand(*shape, generator=generator).to(device)  # noqa: E731
        angle = (rand(batch) * 2 - 1) * self.max_degrees * torch.pi / 180
        if self.rot90:
            angle = angle + torch.randint(0, 4, (batch,), generator=generator).to(device) * torch.pi / 2
        cos, sin = torch.cos(angle), torch.sin(angle)
        flip = torch.where(rand(batch) < 0.5, -1.0, 1.0) if self.flip else torch.ones(batch, device=device)
        theta = torch.zeros(batch, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        labels = F.grid_sample(labels.float(), grid, mode="nearest", padding_mode="zeros",
                               align_corners=False).round().long()
        if self.noise_std > 0:
            images = images + self.noise_std * torch.randn(images.shape, generator=generator).to(device)
        return images, labels
