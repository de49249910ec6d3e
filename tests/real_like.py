"""A small real-like multi-rater set: few images, textured background, small cells (2-12% of each
image) that five raters outline with their own size bias and boundary jitter."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from proseg_pyro.data.slices import SliceSet

RATER_SCALES = (0.8, 0.9, 1.0, 1.1, 1.25)  # each rater's radius bias


def cells_set(num_images: int = 30, size: int = 32, seed: int = 0) -> SliceSet:
    """``num_images`` slices of ``size`` x ``size``: 60% train, 20% val, 20% test."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:size, 0:size]
    images = np.empty((num_images, 1, size, size), dtype=np.float32)
    annotations = np.zeros((num_images, len(RATER_SCALES), size, size), dtype=np.int64)
    for index in range(num_images):
        texture = gaussian_filter(rng.normal(size=(size, size)), 1.5)
        image = texture / texture.std() * 0.6
        for _ in range(rng.integers(1, 4)):
            centre = rng.uniform(0.15 * size, 0.85 * size, 2)
            radius = rng.uniform(0.06, 0.1) * size
            distance = np.hypot(rows - centre[0], columns - centre[1])
            image += 1.2 / (1 + np.exp((distance - radius) / 0.8))  # a cell with a blurred rim
            for rater, scale in enumerate(RATER_SCALES):
                jitter = rng.normal(0, 0.015 * size)
                annotations[index, rater] |= distance <= max(1.0, radius * scale + jitter)
        image += rng.normal(0, 0.3, (size, size))
        images[index, 0] = (image - image.mean()) / image.std()
    splits = ["train"] * int(0.6 * num_images) + ["val"] * int(0.2 * num_images)
    splits += ["test"] * (num_images - len(splits))
    ids = [f"cell{index:03d}" for index in range(num_images)]
    return SliceSet(images, annotations, np.ones((num_images, len(RATER_SCALES)), dtype=bool),
                    [f"rater{r + 1}" for r in range(len(RATER_SCALES))], ["background", "cell"], ids, ids, splits,
                    "real-like cells")
