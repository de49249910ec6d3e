"""What the compared methods share: the annotation plates, an empty guide, and sampling helpers.

Every trainable method observes ``y`` (B, R, H, W) under ``plate("images", dim=-2)`` x
``plate("raters", R, dim=-1)`` with ``poutine.mask(mask)`` over raters who did not annotate an
image, exactly as :class:`~proseg_pyro.model.ProSegModel`, so the shared SVI loop, checkpoints and
evaluation apply unchanged.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import pyro
import torch
from pyro import poutine
from pyro.nn import PyroModule

from ..chunks import chunk_sizes
from ..config import ProSegConfig
from ..likelihoods import Y_LIKELIHOODS
from ..method_entry import Method
from ..networks import make_backbone

SAMPLE_BUDGET = 2 ** 25  # tensor elements one chunk of samples may hold


Plates = tuple[pyro.plate, pyro.plate]


def make_plates(x: torch.Tensor, raters: int) -> Plates:
    """The ``images`` (dim -2, size B of ``x`` (B, ...)) and ``raters`` (dim -1) plates, to enter more than once."""
    return pyro.plate("images", x.shape[0], dim=-2), pyro.plate("raters", raters, dim=-1)


@contextmanager
def annotation_plates(x: torch.Tensor, raters: int, mask: torch.Tensor | None,
                      plates: Plates | None = None) -> Iterator[None]:
    """``images`` x ``raters`` plates with missing raters masked out.

    ``x`` (B, ...) gives the batch size and device; ``mask`` (B, R) bool or None (all present).
    Pass ``plates`` from :func:`make_plates` when a model also uses one of them on its own (Pyro
    names a plate once per trace, so re-entering needs the same objects).
    """
    if mask is None:
        mask = torch.ones(x.shape[0], raters, dtype=torch.bool, device=x.device)
    images, rater_plate = plates if plates is not None else make_plates(x, raters)
    with images, rater_plate, poutine.mask(mask=mask):
        yield


def as_observation(y: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """Labels (B, R, H, W) in the floating dtype of ``like`` (what the likelihoods expect), or None."""
    return None if y is None else y.to(like.dtype)


class FeatureModel(PyroModule):
    """Base of the methods that segment from U-Net features of the image: holds ``config``, the
    annotation likelihood ``y_family`` and ``unet``: images (..., C, H, W) -> features (..., F, H, W)."""

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config
        self.y_family = Y_LIKELIHOODS[config.y_likelihood]
        self.unet = make_backbone(config, config.feature_channels)


class EmptyGuide(PyroModule):
    """The guide of a method without latent variables: it samples nothing."""

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> None:
        return None


def in_chunks(num_samples: int, x: torch.Tensor, slots: int, channels: int,
              draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """``draw(n)`` -> (n, ...) over chunks of samples of at most :data:`SAMPLE_BUDGET` elements, concatenated.

    One sample of images ``x`` (B, C, H, W) is taken to need ``B * slots * H * W * channels``
    elements (``slots`` maps per image, ``channels`` values per pixel, intermediates included).
    """
    per_sample = x.shape[0] * slots * x.shape[-2] * x.shape[-1] * channels
    return torch.cat([draw(size) for size in chunk_sizes(num_samples, per_sample, SAMPLE_BUDGET)])


def random_raters(num_samples: int, batch: int, raters: int, device: torch.device) -> torch.Tensor:
    """A rater drawn uniformly for every sample and image: (S, B) long."""
    return torch.randint(raters, (num_samples, batch), device=device)


# --- methods whose per-rater predictions are deterministic (no latent) --------------------------
@torch.no_grad()
def repeated_personalised(model: PyroModule, guide: PyroModule, x: torch.Tensor, raters, num_samples: int
                          ) -> torch.Tensor:
    """A deterministic method's prediction for each of ``raters``, the same in every sample: (S, B, N, H, W)."""
    probs = model.rater_probs(x)[:, list(raters)]  # (B, N, H, W)
    return probs.expand(num_samples, *probs.shape)


@torch.no_grad()
def random_rater_prior(model: PyroModule, guide: PyroModule, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Diverse samples of a deterministic method: each sample is a uniformly drawn rater's prediction: (S, B, H, W)."""
    probs = model.rater_probs(x)  # (B, R, H, W)
    chosen = random_raters(num_samples, x.shape[0], probs.shape[1], x.device)
    return probs[torch.arange(x.shape[0], device=x.device), chosen]


def deterministic_method(name: str, build: Callable[[ProSegConfig], tuple[PyroModule, PyroModule]],
                         citation: str) -> Method:
    """A :class:`Method` for a model exposing ``rater_probs(x) -> (B, R, H, W)`` foreground probabilities."""
    return Method(name, build, repeated_personalised, random_rater_prior, citation)
