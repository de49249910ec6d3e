"""The registry of annotation likelihoods p(y | ...), and the observed annotation site every method uses.

Adding an entry to :data:`Y_LIKELIHOODS` (and passing its name as the config's ``y_likelihood``) is
all it takes to test an alternative; the models look it up by the config's name. The tau priors
have their own registry, :mod:`proseg_pyro.tau_families`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine


@dataclass(frozen=True)
class AnnotationLikelihood:
    """How predictor outputs become a distribution over a label map and class probabilities.

    ``channels(K)``: predictor outputs for K classes; ``dist(logits)``: logits (..., H, W, channels)
    -> distribution with event shape (H, W); ``probs(logits)``: class probabilities (..., H, W, K);
    ``foreground(logits)``: probability of any class but the background, (..., H, W), equal to
    ``foreground(probs(logits))`` without forming every class's probability;
    ``foreground_readout(K)``: a vector c (channels,) with ``foreground(logits) = sigmoid(logits @ c)``
    where one exists (two classes), else None; a predictor can fold it into its last layer;
    ``probs_of(distribution)``: the class probabilities (..., H, W, K) of a ``dist(logits)``;
    ``max_classes``: the most classes K it can model (None: any).
    """

    channels: Callable[[int], int]
    dist: Callable[[torch.Tensor], dist.Distribution]
    probs: Callable[[torch.Tensor], torch.Tensor]
    foreground: Callable[[torch.Tensor], torch.Tensor]
    foreground_readout: Callable[[int], tuple[float, ...] | None]
    probs_of: Callable[[dist.Distribution], torch.Tensor]
    max_classes: int | None = None


def foreground(class_probs: torch.Tensor) -> torch.Tensor:
    """Class probabilities (..., H, W, K) -> foreground probability (..., H, W) (all but class 0)."""
    return 1.0 - class_probs[..., 0]


def _categorical_foreground(logits: torch.Tensor) -> torch.Tensor:
    # 1 - softmax(l)_0 = sigmoid(logsumexp(l_1..) - l_0); a softmax over a last dim of 2 is slow on CPUs
    others = logits[..., 1] if logits.shape[-1] == 2 else logits[..., 1:].logsumexp(-1)
    return torch.sigmoid(others - logits[..., 0])


def _bernoulli_probs(logits: torch.Tensor) -> torch.Tensor:
    foreground = torch.sigmoid(logits)
    return torch.cat([1 - foreground, foreground], dim=-1)


Y_LIKELIHOODS: dict[str, AnnotationLikelihood] = {
    # softmax over K classes at every pixel (the paper's choice)
    "categorical": AnnotationLikelihood(
        channels=lambda classes: classes,
        dist=lambda logits: dist.Categorical(logits=logits).to_event(2),
        probs=lambda logits: logits.softmax(-1),
        foreground=_categorical_foreground,
        foreground_readout=lambda classes: (-1.0, 1.0) if classes == 2 else None,
        probs_of=lambda distribution: distribution.base_dist.probs),
    # one foreground logit per pixel (binary segmentation only)
    "bernoulli": AnnotationLikelihood(
        channels=lambda classes: 1,
        dist=lambda logits: dist.Bernoulli(logits=logits[..., 0]).to_event(2),
        probs=_bernoulli_probs,
        foreground=lambda logits: torch.sigmoid(logits[..., 0]),
        foreground_readout=lambda classes: (1.0,),
        probs_of=lambda distribution: _bernoulli_probs(distribution.base_dist.logits[..., None]),
        max_classes=2),
}


def soft_dice(class_probs: torch.Tensor, labels: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice of class probabilities (..., H, W, K) with a label map (..., H, W), averaged over the
    foreground classes 1..K-1: (...). ``smooth`` is added to numerator and denominator, so an empty
    annotation predicted empty scores 1."""
    one_hot = F.one_hot(labels.long(), class_probs.shape[-1]).to(class_probs.dtype)[..., 1:]
    probs = class_probs[..., 1:]
    overlap = (probs * one_hot).sum((-3, -2))
    total = probs.sum((-3, -2)) + one_hot.sum((-3, -2))
    return ((2 * overlap + smooth) / (total + smooth)).mean(-1)


def observe_annotations(name: str, family: AnnotationLikelihood, distribution: dist.Distribution,
                        labels: torch.Tensor | None, weight: float, dice_weight: float, pixels: int):
    """The observed annotation site ``name`` under ``distribution`` (event (H, W)) with likelihood
    weight ``weight / pixels`` (``pixels`` = H W for a per-pixel mean, 1 for a sum), and, where
    ``dice_weight`` > 0, a soft-Dice pseudo-likelihood: the factor ``name + "_dice"`` adds
    ``dice_weight * pixels' * (soft Dice - 1)`` to the log joint (pixels' = H W / ``pixels``, so the
    factor weighs the same against the per-pixel likelihood either way). It is not a normalised
    density of ``y``: it rewards overlap where a pixel-wise likelihood lets a small structure vanish
    into the background, as the Dice losses of nnU-Net and of the ProSeg authors' code do.
    Sampling (``labels`` None) draws from ``distribution`` alone. Call inside the model's plates.
    """
    with poutine.scale(scale=weight / pixels):
        value = pyro.sample(name, distribution, obs=labels)
    if labels is not None and dice_weight > 0:
        area = labels.shape[-2] * labels.shape[-1] / pixels
        with poutine.scale(scale=dice_weight * area):
            pyro.factor(f"{name}_dice", soft_dice(family.probs_of(distribution), labels) - 1)
    return value

