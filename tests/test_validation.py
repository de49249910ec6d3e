"""Validation's Dice of the personalised predictions against hand-counted pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from proseg_pyro import validation

from .conftest import tiny_config


def test_validation_dice_scores_each_annotated_rater_and_counts_empty_images(monkeypatch):
    """Image 0: rater 0 hits 2 of its 2 pixels with 2 predicted (Dice 1), rater 1 (not annotated) is
    skipped; image 1: nothing predicted for an annotation of 1 pixel (Dice 0) and an empty one (1)."""
    probs = torch.zeros(1, 2, 2, 2, 2)  # (S, B, R, H, W)
    probs[0, 0, 0, 0] = 0.9
    labels = np.zeros((2, 2, 2, 2), dtype=np.uint8)
    labels[0, 0, 0] = 1
    labels[1, 0, 1, 1] = 1
    mask = np.array([[True, False], [True, True]])

    class Fixed:
        personalised = staticmethod(lambda model, guide, x, raters, samples: probs[:, :len(x)].expand(samples, -1, -1, -1, -1))

    class Model:
        config = tiny_config(num_raters=2)

    monkeypatch.setattr(validation, "get_method", lambda name: Fixed)
    images = np.zeros((2, 1, 2, 2), np.float32)
    dice, empty = validation.validation_dice(Model(), None, (images, labels, mask), 8, 0, torch.device("cpu"))
    assert dice == pytest.approx((1 + 0 + 1) / 3)
    assert empty == 0.5
    # where column 1 of image 0 is padding, its predicted pixel counts for nothing: Dice 2 * 1 / (1 + 2)
    inside = np.ones((2, 2, 2), bool)
    inside[0, :, 1] = False
    dice, _ = validation.validation_dice(Model(), None, (images, labels, mask), 8, 0, torch.device("cpu"), inside)
    assert dice == pytest.approx((2 / 3 + 0 + 1) / 3)
