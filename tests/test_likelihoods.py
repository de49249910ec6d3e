"""The annotation likelihoods' foreground shortcut equals the foreground of their class probabilities."""
from __future__ import annotations

import pytest
import torch

from proseg_pyro.likelihoods import Y_LIKELIHOODS, foreground, soft_dice


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


def test_soft_dice_by_hand():
    """Two foreground pixels predicted at 0.5 and 1.0, a background pixel at 0.5: (2 * 1.5 + 1) / (2 + 2 + 1)."""
    foreground = torch.tensor([[0.5, 1.0], [0.5, 0.0]])
    labels = torch.tensor([[1, 1], [0, 0]])
    probs = torch.stack([1 - foreground, foreground], -1)
    torch.testing.assert_close(soft_dice(probs, labels), torch.tensor(4 / 5))
    empty = torch.zeros(2, 2, dtype=torch.long)
    assert float(soft_dice(torch.stack([torch.ones(2, 2), torch.zeros(2, 2)], -1), empty)) == 1.0


def test_soft_dice_averages_the_foreground_classes():
    labels = torch.tensor([[1, 2], [0, 0]])
    probs = torch.nn.functional.one_hot(torch.tensor([[1, 1], [0, 0]]), 3).float()
    # class 1: 2 predicted, 1 true, overlap 1 -> 3 / 4; class 2: 0 predicted, 1 true -> 1 / 2
    torch.testing.assert_close(soft_dice(probs, labels), torch.tensor((3 / 4 + 1 / 2) / 2))


@pytest.mark.parametrize("name", ["categorical", "bernoulli"])
def test_probs_of_a_distribution_equal_the_probs_of_its_logits(name):
    family = Y_LIKELIHOODS[name]
    logits = torch.randn(3, 5, 7, family.channels(2), dtype=torch.float64)
    torch.testing.assert_close(family.probs_of(family.dist(logits)), family.probs(logits))
