"""Validation of a training run: the negative ELBO per image and the Dice of the personalised
predictions, with the same draws at every validation so that validations compare fairly."""
from __future__ import annotations

import numpy as np
import torch
from pyro.nn import PyroModule
from torch import nn

from .data.patches import Arrays, to_device
from .distributed import Rank, elbo_with_image_noise
from .methods import get_method

# Noise stream of validation in :class:`~proseg_pyro.distributed.ImageNoise` (training step s uses s + 1).
VALIDATION_STREAM = 0
# Personalised samples per rater behind the validation Dice.
VALIDATION_SAMPLES = 4


@torch.no_grad()
def validation_loss(elbo: nn.Module, data: Arrays, batch_size: int, seed: int, device: torch.device,
                    rank: Rank = Rank()) -> float:
    """Negative ELBO per image over ``data`` (images, labels, mask arrays, moved to ``device`` a batch
    at a time); every image draws the same noise at each validation, so validations compare fairly.
    In a process group each rank scores its shard and the sums are added."""
    positions = rank.shard(torch.arange(len(data[0])))
    total = 0.0
    for number, start in enumerate(range(0, len(positions), batch_size)):
        part = positions[start:start + batch_size]
        batch = to_device(*(array[part.numpy()] for array in data), device)
        total += float(elbo_with_image_noise(elbo, batch, part, (seed, VALIDATION_STREAM, number)))
    return rank.sum(total, device) / len(data[0])


@torch.no_grad()
def validation_dice(model: PyroModule, guide: PyroModule, data: Arrays, batch_size: int, seed: int,
                    device: torch.device, inside: np.ndarray | None = None) -> tuple[float, float]:
    """Mean Dice of each annotation with the prediction in its rater's style (the mean of
    :data:`VALIDATION_SAMPLES` personalised samples, thresholded at 0.5; empty with empty counts 1),
    over the annotated (image, rater) pairs of ``data`` (images, labels, mask arrays, moved to
    ``device`` a batch at a time); and the share of images for which every rater's prediction is
    empty. ``inside`` (S, H, W) bool: the pixels that are image (predictions in the padding that
    stacks slices of different sizes count for nothing); None: all. The same draws at every
    validation; the global RNG is left as it was."""
    method = get_method(model.config.method)
    raters = list(range(model.config.num_raters))
    dice_sum, empty_images, annotated = 0.0, 0, 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(data[0]), batch_size):
            images, labels, mask = to_device(*(array[start:start + batch_size] for array in data), device)
            predicted = method.personalised(model, guide, images, raters, VALIDATION_SAMPLES).mean(0) > 0.5
            if inside is not None:
                predicted &= torch.as_tensor(inside[start:start + batch_size], device=device)[:, None]
            truth = labels > 0
            overlap = (predicted & truth).sum((-2, -1))
            total = predicted.sum((-2, -1)) + truth.sum((-2, -1))
            dice = torch.where(total > 0, 2 * overlap / total.clamp_min(1), torch.ones_like(total, dtype=torch.float))
            dice_sum += float(dice[mask].sum())
            annotated += int(mask.sum())
            empty_images += int((predicted.sum((-3, -2, -1)) == 0).sum())
    return dice_sum / max(1, annotated), empty_images / len(data[0])
