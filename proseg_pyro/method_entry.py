"""The :class:`Method` type: what a trainable method provides to the shared training loop and
evaluation. A leaf module (it imports no method), so every method's module can export its entry
and :mod:`proseg_pyro.methods` can list them all without an import cycle."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from pyro.nn import PyroModule

from .config import ProSegConfig

# (model, guide, x (B, C, H, W), raters, num_samples) -> foreground probabilities (S, B, N, H, W)
PersonalisedSampler = Callable[[PyroModule, PyroModule, torch.Tensor, list, int], torch.Tensor]
# (model, guide, x (B, C, H, W), num_samples) -> foreground probabilities (S, B, H, W)
PriorSampler = Callable[[PyroModule, PyroModule, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class Method:
    """How to build a method's model and guide from a config, and how to sample from them.

    Every method is a Pyro ``model`` and ``guide`` (a method without latents has a guide that samples
    nothing) taking ``(x (B, C, H, W), y (B, R, H, W) | None, mask (B, R) | None)``, trained with
    ``Trace_ELBO``, plus the two samplers that evaluation calls.
    """

    name: str
    build: Callable[[ProSegConfig], tuple[PyroModule, PyroModule]]
    personalised: PersonalisedSampler
    prior: PriorSampler
    citation: str = ""
