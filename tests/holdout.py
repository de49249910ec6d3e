"""Shared by the tests of scan sampling, enrolment, identification and figures.

A tiny ProSeg fitted to three of the built-in set's four raters (one held out for enrolment), once
per test session and in seconds, and a writer of scans with a non-trivial geometry.

Use it through the ``holdout`` fixture (``from .holdout import holdout_fixture``); the tests of a module
that uses it run on one thread, which is fastest for models this small and does not fight other
processes for the cores.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import SimpleITK as sitk

from proseg_pyro.checkpoint import load_checkpoint
from proseg_pyro.config import ProSegConfig
from proseg_pyro.data.slices import SliceSet
from proseg_pyro.data.synthetic import make_synthetic
from proseg_pyro.train import fit

from .helpers import single_thread

SPACING, ORIGIN = (0.7, 0.85, 2.5), (12.5, -40.0, 7.25)
ROTATION = (0.0, -0.8, 0.6, 1.0, 0.0, 0.0, 0.0, 0.6, 0.8)  # a rotation, far from the identity


def write_scan(array: np.ndarray, path, reference: sitk.Image | None = None) -> sitk.Image:
    """``array`` (Z, H, W) as a file with non-unit spacing, an origin and a rotated direction."""
    image = sitk.GetImageFromArray(array)
    if reference is None:
        image.SetSpacing(SPACING)
        image.SetOrigin(ORIGIN)
        image.SetDirection(ROTATION)
    else:
        image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))
    return image


HELD_OUT = 1  # the built-in "generous" rater: low threshold, includes the faint satellites
IMAGE_SIZE = 16


@dataclass
class Holdout:
    """``checkpoint`` trained on ``known`` (raters 0, 2, 3 of ``slices``); ``slices`` has all four."""

    checkpoint: Path
    slices: SliceSet
    known: SliceSet

    def load(self):
        return load_checkpoint(self.checkpoint)


_TRAINED: dict[str, Holdout] = {}


def tiny_holdout_config(**overrides) -> ProSegConfig:
    values = dict(image_size=IMAGE_SIZE, base_channels=8, depth=2, feature_channels=8, z_channels=4,
                  predictor_hidden=16, classifier_hidden=16, x_decoder_channels=4, batch_size=8, steps=420, val_every=60,
                  # the objective this enrolment test was built on: a constant rate, no Dice factor, and the
                  # former summed ELBO's tau weights (0.1 on tau's KL, 1 on log p(r)) per pixel at 16 x 16,
                  # and q(tau | r)'s former start (1 and 0.1)
                  lr_schedule="constant", dice_weight=0.0, beta_tau=0.1 / 256, weight_r=1 / 256,
                  tau_init_concentration=1.0,
                  augment=False, patience=100, lr=3e-3, num_raters=3)
    return ProSegConfig(**{**values, **overrides})


def trained_holdout(tmp_path_factory: pytest.TempPathFactory) -> Holdout:
    """The shared model (trained on first use in this session: 96 images, 420 steps)."""
    if "holdout" not in _TRAINED:
        slices, _ = make_synthetic(num_images=96, image_size=IMAGE_SIZE, seed=5)
        keep = [rater for rater in range(len(slices.raters)) if rater != HELD_OUT]
        known = dataclasses.replace(slices, annotations=slices.annotations[:, keep], mask=slices.mask[:, keep],
                                    raters=[slices.raters[rater] for rater in keep])
        out = tmp_path_factory.mktemp("holdout")
        fit(tiny_holdout_config().fitted_to(known), known.split("train"), known.split("val"), out,
            progress=False)
        _TRAINED["holdout"] = Holdout(out / "last.pt", slices, known)
    return _TRAINED["holdout"]


@pytest.fixture(scope="module", name="holdout")
def holdout_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Holdout]:
    with single_thread():
        yield trained_holdout(tmp_path_factory)
