"""Shared fixtures: tiny configs and a tiny built-in data set, so model tests run in seconds."""
from __future__ import annotations

import os

import pytest
import torch

from proseg_pyro.config import ProSegConfig
from proseg_pyro.data.synthetic import make_synthetic

torch.set_num_threads(min(2, torch.get_num_threads()))


def tiny_config(**overrides) -> ProSegConfig:
    """A config small enough to train in seconds on a CPU (16x16 images, narrow networks)."""
    values = dict(image_size=16, base_channels=8, depth=2, feature_channels=8, z_channels=4,
                  predictor_hidden=8, classifier_hidden=8, x_decoder_channels=4, batch_size=8,
                  steps=6, val_every=3, augment=False, patience=100)
    return ProSegConfig(**{**values, **overrides})


@pytest.fixture(scope="session")
def tiny_set():
    """40 synthetic 16x16 slices with 4 raters and the truth behind them."""
    return make_synthetic(num_images=40, image_size=16, seed=3)


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory):
    """The slice cache of every test in a folder of the test session, never the user's own."""
    folder = tmp_path_factory.mktemp("user-cache")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous
