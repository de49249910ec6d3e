"""Built-in multi-rater set with known truth: blurred lesions, faint satellites, distractors, noise.

Every image holds one main lesion with a blurred boundary (image ambiguity), zero to two faint
satellite lesions, and sometimes a sharp line-shaped distractor that no rater outlines. Each lesion
is a soft map ``m(p) = sigmoid((1 - d(p)) * r / w)`` (``d`` the boundary-normalised distance,
``r`` the radius, ``w`` the blur width in pixels). A rater with style ``(threshold, satellites,
ragged, jitter)`` outlines ``{p : m(p) > threshold + jitter * e + ragged * n(p)}``, with ``e`` a
standard normal per annotation and ``n`` a smooth unit-variance noise field per annotation; faint
satellites count only for raters whose style includes them. The truth (soft maps and styles) is kept
so that fresh annotations can be drawn from the true rater model (the oracle).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .slices import SliceSet
from .transforms import normalise_intensity


@dataclass(frozen=True)
class RaterStyle:
    """How one synthetic rater outlines a lesion."""

    name: str
    threshold: float  # level of the soft lesion map the rater traces (low = generous)
    satellites: bool  # outlines the faint satellite lesions too
    ragged: float = 0.0  # amplitude of the per-annotation boundary noise field (0 = smooth)
    jitter: float = 0.03  # std of the per-annotation threshold shift


DEFAULT_STYLES: tuple[RaterStyle, ...] = (
    RaterStyle("tight", threshold=0.8, satellites=False),
    RaterStyle("generous", threshold=0.2, satellites=True),
    RaterStyle("ragged", threshold=0.5, satellites=True, ragged=0.2),
    RaterStyle("core", threshold=0.5, satellites=False),
)


@dataclass
class SyntheticTruth:
    """The ground truth behind a synthetic set: ``main`` and ``satellite`` soft maps (S, H, W)."""

    main: np.ndarray
    satellite: np.ndarray
    styles: tuple[RaterStyle, ...]

    def draw(self, rng: np.random.Generator, raters: list[int] | None = None,
             index: np.ndarray | None = None) -> np.ndarray:
        """Fresh annotations from the true rater model: (S, len(raters), H, W) uint8."""
        raters = list(range(len(self.styles))) if raters is None else raters
        index = np.arange(len(self.main)) if index is None else np.asarray(index)
        main, satellite = self.main[index], self.satellite[index]
        out = np.empty((len(index), len(raters), *main.shape[1:]), dtype=np.uint8)
        for slot, rater in enumerate(raters):
            style = self.styles[rater]
            soft = np.maximum(main, satellite) if style.satellites else main
            level = style.threshold + style.jitter * rng.standard_normal((len(index), 1, 1))
            if style.ragged > 0:
                level = level + style.ragged * _smooth_noise(rng, main.shape, sigma=1.5)
            out[:, slot] = soft > level
        return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian noise smoothed over the last two axes, rescaled to unit variance: ``shape``."""
    field = gaussian_filter(rng.standard_normal(shape), sigma=(0,) * (len(shape) - 2) + (sigma, sigma))
    return field / field.std(axis=(-2, -1), keepdims=True)


def _blob(size: int, centre: np.ndarray, radius: float, blur: float, rng: np.random.Generator) -> np.ndarray:
    """Soft map (size, size) of a lobed ellipse: 1 inside, 0.5 on the boundary, ``blur`` px wide."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    angle = np.arctan2(dy, dx)
    lobes = 1.0
    for harmonic, amplitude in ((2, 0.15), (3, 0.08)):
        lobes = lobes + amplitude * rng.uniform(0.3, 1.0) * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    distance = np.hypot(dy, dx) / (radius * lobes)
    return 1.0 / (1.0 + np.exp(-(1.0 - distance) * radius / blur))


def _line(size: int, rng: np.random.Generator) -> np.ndarray:
    """A sharp, thin line segment (a vessel-like distractor): (size, size) in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    start = rng.uniform(0.1, 0.9, 2) * size
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.sin(angle), np.cos(angle)])
    length = rng.uniform(0.3, 0.6) * size
    rel = np.stack([yy - start[0], xx - start[1]])
    along = np.clip(direction[0] * rel[0] + direction[1] * rel[1], 0, length)
    gap = np.hypot(rel[0] - along * direction[0], rel[1] - along * direction[1])
    return (gap < 1.0).astype(np.float64)


def make_synthetic(num_images: int = 240, image_size: int = 64, seed: int = 0,
                   styles: tuple[RaterStyle, ...] = DEFAULT_STYLES, noise: float = 0.25,
                   split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> tuple[SliceSet, SyntheticTruth]:
    """Generate ``num_images`` single-channel slices with one annotation per style.

    Returns the slices (images z-scored, split by subject into train/val/test by
    ``split_fractions``) and the truth that generated them. The same seed gives the same set.
    """
    if num_images < 1 or image_size < 16:
        raise ValueError("make_synthetic: need num_images >= 1 and image_size >= 16")
    rng = np.random.default_rng(seed)
    size = image_size
    main = np.empty((num_images, size, size))
    satellite = np.zeros((num_images, size, size))
    images = np.empty((num_images, 1, size, size), dtype=np.float32)
    for item in range(num_images):
        radius = rng.uniform(0.12, 0.2) * size
        centre = rng.uniform(0.3, 0.7, 2) * size
        main[item] = _blob(size, centre, radius, rng.uniform(0.12, 0.22) * radius, rng)
        image = rng.uniform(0.8, 1.2) * main[item]
        for _ in range(rng.integers(0, 3)):
            offset_angle = rng.uniform(0, 2 * np.pi)
            offset = radius * rng.uniform(1.5, 2.2) * np.array([np.sin(offset_angle), np.cos(offset_angle)])
            small = rng.uniform(0.05, 0.08) * size
            blob = _blob(size, np.clip(centre + offset, 0.1 * size, 0.9 * size), small, 0.2 * small, rng)
            satellite[item] = np.maximum(satellite[item], blob)
            image = image + rng.uniform(0.35, 0.5) * blob
        if rng.random() < 0.5:
            image = image + rng.uniform(0.6, 0.9) * _line(size, rng)
        image = image + 0.3 * _smooth_noise(rng, (size, size), sigma=size / 8) * 0.3
        image = image + noise * rng.standard_normal((size, size))
        images[item, 0] = image
    images = np.stack([normalise_intensity(image, "zscore") for image in images])
    truth = SyntheticTruth(main.astype(np.float32), satellite.astype(np.float32), tuple(styles))
    annotations = truth.draw(rng)
    subjects = [f"syn{item:04d}" for item in range(num_images)]
    order = rng.permutation(num_images)
    n_train = int(round(split_fractions[0] * num_images))
    n_val = int(round(split_fractions[1] * num_images))
    splits = np.empty(num_images, dtype=object)
    splits[order[:n_train]] = "train"
    splits[order[n_train:n_train + n_val]] = "val"
    splits[order[n_train + n_val:]] = "test"
    slices = SliceSet(images=images, annotations=annotations,
                      mask=np.ones((num_images, len(styles)), dtype=bool),
                      raters=[style.name for style in styles], classes=["background", "lesion"],
                      subjects=subjects, case_ids=list(subjects), splits=list(splits), name="synthetic")
    return slices, truth
