"""Registries of the swappable choices of the ProSeg model: tau priors and annotation likelihoods.

Adding an entry here (or passing another name in the config) is all it takes to test an
alternative; the model and guide look choices up by the config's name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyro.distributions as dist
import torch


@dataclass(frozen=True)
class AnnotationLikelihood:
    """How predictor outputs become a distribution over a label map and class probabilities.

    ``channels(K)``: predictor outputs for K classes; ``dist(logits)``: logits (..., H, W, channels)
    -> distribution with event shape (H, W); ``probs(logits)``: class probabilities (..., H, W, K);
    ``foreground(logits)``: probability of any class but the background, (..., H, W), equal to
    ``foreground(probs(logits))`` without forming every class's probability;
    ``foreground_readout(K)``: a vector c (channels,) with ``foreground(logits) = sigmoid(logits @ c)``
    where one exists (two classes), else None; a predictor can fold it into its last layer.
    """

    channels: Callable[[int], int]
    dist: Callable[[torch.Tensor], dist.Distribution]
    probs: Callable[[torch.Tensor], torch.Tensor]
    foreground: Callable[[torch.Tensor], torch.Tensor]
    foreground_readout: Callable[[int], tuple[float, ...] | None]


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
        foreground_readout=lambda classes: (-1.0, 1.0) if classes == 2 else None),
    # one foreground logit per pixel (binary segmentation only)
    "bernoulli": AnnotationLikelihood(
        channels=lambda classes: 1,
        dist=lambda logits: dist.Bernoulli(logits=logits[..., 0]).to_event(2),
        probs=_bernoulli_probs,
        foreground=lambda logits: torch.sigmoid(logits[..., 0]),
        foreground_readout=lambda classes: (1.0,)),
}


# tau priors: (tau_dim, alpha0, anchor tensor for device/dtype) -> distribution with event (T,)
TAU_PRIORS: dict[str, Callable[[int, float, torch.Tensor], dist.Distribution]] = {
    "dirichlet": lambda dim, alpha0, anchor: dist.Dirichlet(anchor.new_full((dim,), alpha0)),
    # Gaussian on the first T-1 logits, mapped to the simplex by the additive logistic transform
    "logistic_normal": lambda dim, alpha0, anchor: dist.LogisticNormal(anchor.new_zeros(dim - 1),
                                                                       anchor.new_ones(dim - 1)),
}
