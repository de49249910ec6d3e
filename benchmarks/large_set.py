"""Peak memory of training on a large data set: written once as NIfTI volumes in a temporary folder,
loaded through the slice cache (built case by case, then memory-mapped) and trained for a few steps.

The set: ``slices`` slices of ``image_size`` x ``image_size`` in volumes of ``SLICES_PER_CASE``, one
channel, ``raters`` raters each outlining a disc of its own radius around the slice's lesion; one
volume is the validation split, one the test split, the rest train.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import load_dataset
from proseg_pyro.data.images import Geometry, write_image
from proseg_pyro.train import fit

from .measure import peak_memory

SLICES_PER_CASE = 100
GIB = 2 ** 30


def write_large_set(folder: Path, slices: int, image_size: int, raters: int, seed: int = 0) -> Path:
    """Write the set (one volume in memory at a time) and its manifest into ``folder``; returns the manifest."""
    rng = np.random.default_rng(seed)
    grid = np.arange(image_size, dtype=np.float32)
    cases, names = [], [f"rater{index}" for index in range(raters)]
    for number in range(math.ceil(slices / SLICES_PER_CASE)):
        depth = min(SLICES_PER_CASE, slices - number * SLICES_PER_CASE)
        centres = rng.uniform(0.2, 0.8, (depth, 2, 1, 1)).astype(np.float32) * image_size
        distance = np.hypot(grid[None, :, None] - centres[:, 0], grid[None, None, :] - centres[:, 1])
        radius = image_size * rng.uniform(0.05, 0.15, (depth, 1, 1)).astype(np.float32)
        image = (distance < radius) + rng.normal(0, 0.5, distance.shape).astype(np.float32)
        stem = f"case{number:04d}"
        write_image(image.astype(np.float32), Geometry.unit(image.shape), folder / f"{stem}.nii")
        annotations = {}
        for slot, name in enumerate(names):
            annotations[name] = f"{stem}_{name}.nii"
            label = (distance < radius * (0.8 + 0.1 * slot)).astype(np.uint8)
            write_image(label, Geometry.unit(label.shape), folder / annotations[name])
        split = "val" if number == 0 else "test" if number == 1 else "train"
        cases.append({"id": stem, "split": split, "image": f"{stem}.nii", "annotations": annotations})
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"name": "large", "raters": names, "classes": ["background", "lesion"],
                                    "cases": cases}))
    return manifest


def bench_large_set(slices: int, config: ProSegConfig, device: torch.device, steps: int = 4) -> dict:
    """Peak memory of building the slice cache of a ``slices``-slice set and of training ``steps``
    steps on it (one validation at the end), each measured on its own; seconds of each."""
    with tempfile.TemporaryDirectory(prefix="proseg-pyro-large-") as folder:
        folder = Path(folder)
        (folder / "data").mkdir()
        tic = time.perf_counter()
        manifest = write_large_set(folder / "data", slices, config.image_size, config.num_raters)
        written = time.perf_counter() - tic
        options = dict(config=config, cache_dir=folder / "cache", whole=config.resize == "crop")
        tic = time.perf_counter()
        build_peak = peak_memory(lambda: load_dataset(manifest, **options), device)
        built = time.perf_counter() - tic
        config = config.replace(steps=steps, val_every=steps, warmup_steps=0)

        def train() -> None:
            data = load_dataset(manifest, **options)  # from the cache, memory-mapped
            fit(config, data.split("train"), data.split("val"), folder / "run", device=device, progress=False)

        tic = time.perf_counter()
        train_peak = peak_memory(train, device)
        trained = time.perf_counter() - tic
        disk = sum(path.stat().st_size for path in (folder / "cache").rglob("*") if path.is_file())
    return {"slices": slices, "image_size": config.image_size, "raters": config.num_raters, "steps": steps,
            "cache_gib": disk / GIB, "write_s": written, "build_s": built, "train_s": trained,
            "build_peak_gib": None if build_peak is None else build_peak / GIB,
            "train_peak_gib": None if train_peak is None else train_peak / GIB}
