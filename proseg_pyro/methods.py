"""Registry of trainable methods: ProSeg and the compared methods share one loop and one evaluation.

Every method is a Pyro ``model`` and ``guide`` (a method without latents has a guide that samples
nothing), trained with ``Trace_ELBO``, plus two samplers that evaluation calls.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from pyro.nn import PyroModule

from . import inference
from .config import ProSegConfig
from .errors import ConfigError
from .guide import ProSegGuide
from .model import ProSegModel

# (model, guide, x (B, C, H, W), raters, num_samples) -> foreground probabilities (S, B, N, H, W)
PersonalisedSampler = Callable[[PyroModule, PyroModule, torch.Tensor, list, int], torch.Tensor]
# (model, guide, x (B, C, H, W), num_samples) -> foreground probabilities (S, B, H, W)
PriorSampler = Callable[[PyroModule, PyroModule, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class Method:
    """How to build a method's model and guide from a config, and how to sample from them."""

    name: str
    build: Callable[[ProSegConfig], tuple[PyroModule, PyroModule]]
    personalised: PersonalisedSampler
    prior: PriorSampler
    citation: str = ""


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


register(Method("proseg", lambda config: (ProSegModel(config), ProSegGuide(config)),
                inference.personalised, inference.prior,
                "Probabilistic modeling of multi-rater medical image segmentation for diversity and personalization"))


def get_method(name: str) -> Method:
    """The registered method ``name`` (the compared methods register when first asked for)."""
    if name not in METHODS:
        from . import baselines  # noqa: F401  (registers the compared methods)
    if name not in METHODS:
        raise ConfigError(f"config: unknown method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name]
