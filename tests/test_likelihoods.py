"""The annotation likelihoods' foreground shortcut equals the foreground of their class probabilities."""
from __future__ import annotations

import pytest
import torch

from proseg_pyro.likelihoods import Y_LIKELIHOODS, foreground


@pytest.mark.parametrize("name,classes", [("categorical", 2), ("categorical", 4), ("bernoulli", 2)])
def test_foreground_from_logits_is_one_minus_background(name, classes):
    family = Y_LIKELIHOODS[name]
    logits = 6 * torch.randn(3, 5, 7, family.channels(classes), dtype=torch.float64)
    probs = family.probs(logits)
    assert probs.shape == (3, 5, 7, classes)
    torch.testing.assert_close(family.foreground(logits), foreground(probs), rtol=1e-12, atol=1e-12)


def test_two_class_foreground_by_hand():
    logits = torch.tensor([[0.0, 0.0], [0.0, 2.0], [3.0, -1.0]])
    expected = torch.tensor([0.5, 1 / (1 + torch.e ** -2), 1 / (1 + torch.e ** 4)])
    torch.testing.assert_close(Y_LIKELIHOODS["categorical"].foreground(logits), expected)
