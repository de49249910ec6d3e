"""``load_dataset``: any registered format (or the built-in set) as preprocessed 2D slices, through
the slice cache; ``dataset_spacing``: the training spacing a source implies."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import ProSegConfig
from ..errors import ConfigError
from .cache import cached, default_cache_dir
from .slices import SliceSet
from .splits import SPLITS
from .synthetic import make_synthetic
from .transforms import normalise_slices

SYNTHETIC = "synthetic"  # the built-in set: generated from a seed, not read from a path, not cached


def load_dataset(source: str | os.PathLike, split: str | None = None, config: ProSegConfig | None = None, *,
                 rank_raters: str = "area", fold: int = 0, num_images: int = 240, seed: int = 0,
                 cache: bool = True, cache_dir: str | os.PathLike | None = None,
                 allow_outside_paths: bool = False, whole: bool = False) -> SliceSet:
    """Load a dataset as preprocessed 2D slices (all splits, or only ``split``).

    ``source``: a path in any registered format (:mod:`~proseg_pyro.data.formats`: an nnU-Net
    folder, a manifest ``.json``, a LIDC-style pickle or ``.zip`` holding one (``rank_raters``
    "area" | "keep" and ``fold`` 0..3 apply), an NPC folder of ``.h5`` files), or ``"synthetic"``
    (:func:`make_synthetic` with ``num_images`` images from ``seed``, renormalised per slice like the
    other sources). ``config`` gives ``image_size``, ``resize``, ``intensity`` and ``spacing``
    (default :class:`ProSegConfig`). Slices are brought to ``image_size`` (training's form), or with
    ``whole`` keep their whole field of view (evaluation's form;
    :func:`~proseg_pyro.data.cases.cases_to_slices`). File sources are cached in ``cache_dir``
    (default :func:`~proseg_pyro.data.cache.default_cache_dir`, never the dataset's folder;
    ``cache=False`` rebuilds without reading or writing the cache). A manifest's files must lie in
    its folder unless ``allow_outside_paths``.

    Returns a :class:`SliceSet`: images (S, C, H, W) float32, annotations (S, R, H, W) uint8,
    mask (S, R) bool, grouped by split; from the cache memory-mapped (read-only). Bad input raises
    :class:`DataError` naming the file.
    """
    config = config or ProSegConfig()
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS} or None, got {split!r}")
    if isinstance(source, str) and source == SYNTHETIC:
        slices = make_synthetic(num_images, config.image_size, seed)[0]
        slices = replace(slices, images=normalise_slices(slices.images, config.intensity))
    else:
        from .formats import ReadOptions, cache_key, detect

        path = Path(source)
        fmt, options = detect(path), ReadOptions(config, rank_raters, fold, whole, allow_outside_paths)

        def build(store: Path | None) -> SliceSet:
            return fmt.read(path, replace(options, store=store))

        slices = (cached(path, fmt.files(path, options), cache_key(fmt, options), config, build,
                         Path(cache_dir or default_cache_dir())) if cache else build(None))
    return slices if split is None else slices.split(split)


def dataset_spacing(source: str | os.PathLike, rank_raters: str = "area", fold: int = 0,
                    allow_outside_paths: bool = False) -> tuple[float, float] | None:
    """The median in-plane (x, y) spacing in mm of a dataset's training cases, or None for a source
    whose files carry no spacing (the built-in set, LIDC pickles, NPC folders)."""
    if isinstance(source, str) and source == SYNTHETIC:
        return None
    from .formats import ReadOptions, detect

    path = Path(source)
    options = ReadOptions(ProSegConfig(), rank_raters, fold, allow_outside_paths=allow_outside_paths)
    spacings = detect(path).spacings(path, options)
    if not spacings:
        return None
    return tuple(float(value) for value in np.median(np.asarray(spacings), axis=0))
