"""A small real-like set (30 images, cells covering 2-12% of each image, five raters) trains with the
default objective and budget machinery into a model that segments, not one that predicts nothing."""
from __future__ import annotations

import torch

from proseg_pyro import inference
from proseg_pyro.checkpoint import load_checkpoint
from proseg_pyro.config import ProSegConfig
from proseg_pyro.train import fit

from .helpers import one_thread  # noqa: F401  (a fixture)
from .real_like import cells_set


def test_thirty_images_with_small_cells_train_into_a_model_that_segments(one_thread, tmp_path):
    slices = cells_set(num_images=30, size=32, seed=0)
    share = slices.annotations.mean()
    assert 0.02 < share < 0.12
    # defaults but for the image size and a shorter budget than a user's (CPU time of the suite)
    config = ProSegConfig(image_size=32, steps=300).fitted_to(slices)
    result = fit(config, slices.split("train"), slices.split("val"), tmp_path, progress=False)
    assert not result.predicts_nothing
    model, guide, _ = load_checkpoint(tmp_path / "best.pt")
    test = slices.split("test")
    torch.manual_seed(0)
    predicted = inference.personalised(model, guide, torch.as_tensor(test.images), range(5), 8).mean(0) > 0.5
    truth = torch.as_tensor(test.annotations) > 0
    dice = 2 * (predicted & truth).sum((-2, -1)) / (predicted.sum((-2, -1)) + truth.sum((-2, -1))).clamp_min(1)
    assert dice.float().mean() > 0.25, dice.float().mean()
    assert share / 3 < predicted.float().mean() < 3 * share
