"""The training budget: how many optimiser steps a run takes and the learning rate at each step."""
from __future__ import annotations

import math

from .config import ProSegConfig


def total_steps(config: ProSegConfig, train_images: int) -> int:
    """Optimiser steps of a run: ``config.steps``, or ``config.epochs`` passes over ``train_images``
    images in batches of ``config.batch_size`` where epochs are given instead."""
    if config.epochs is None:
        return config.steps
    return max(1, math.ceil(config.epochs * train_images / config.batch_size))


def learning_rate(config: ProSegConfig, step: int, steps: int) -> float:
    """The rate of step ``step`` (0-based) of ``steps``: a linear warm-up over ``config.warmup_steps``,
    then ``config.lr_schedule``: ``"cosine"`` (half a cosine from ``lr`` to 1% of it), ``"poly"``
    (``lr * (1 - t)**0.9``, nnU-Net's) or ``"constant"``."""
    warmup = min(config.warmup_steps, steps - 1)
    if step < warmup:
        return config.lr * (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, steps - warmup)
    if config.lr_schedule == "cosine":
        return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
    if config.lr_schedule == "poly":
        return config.lr * (1 - progress) ** 0.9
    return config.lr
