"""The straightforward per-sample and per-pair loops that the vectorised code is measured against."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from proseg_pyro import inference
from proseg_pyro.metrics import SOFT_DICE_THRESHOLDS


def sample_loop(model, guide, x: torch.Tensor, raters, num_samples: int) -> torch.Tensor:
    """Personalised samples drawn one at a time (one rater's one sample of the batch per call of the
    whole network, as a per-sample loop does): (S, B, N, H, W)."""
    return torch.stack([torch.cat([inference.personalised(model, guide, x, [rater], 1)[0] for rater in raters], 1)
                        for _ in range(num_samples)])


def sample_loop_raters_batched(model, guide, x: torch.Tensor, raters, num_samples: int) -> torch.Tensor:
    """A loop over samples that draws every rater's sample in one call: (S, B, N, H, W)."""
    return torch.cat([inference.personalised(model, guide, x, raters, 1) for _ in range(num_samples)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2 * np.logical_and(a, b).sum() / total


def _mean_distance(first: list[np.ndarray], second: list[np.ndarray]) -> float:
    return float(np.mean([1 - _iou(a, b) for a in first for b in second]))


def metrics_loop(annotations: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """The paper's metrics of one image (``"paper"`` convention) from a loop over every pair of masks.

    ``annotations`` (A, H, W) binary, ``probabilities`` (P, H, W) in [0, 1].
    """
    annotated = [a.astype(bool) for a in annotations]
    predicted = [p > 0.5 for p in probabilities]
    d_pa, d_pp, d_aa = (_mean_distance(predicted, annotated), _mean_distance(predicted, predicted),
                        _mean_distance(annotated, annotated))
    dice = np.array([[_dice(a, p) for p in predicted] for a in annotated])  # (A, P)
    mean_annotation, mean_probability = np.mean(annotated, 0), np.mean(probabilities, 0)
    soft = np.mean([_dice(mean_annotation > t, mean_probability > t) for t in SOFT_DICE_THRESHOLDS])
    rows, cols = linear_sum_assignment(dice, maximize=True)
    return {"ged": 2 * d_pa - d_pp - d_aa, "d_pa": d_pa, "d_pp": d_pp, "d_aa": d_aa, "dice_soft": float(soft),
            "dice_max": float(dice.max(1).mean()), "dice_match": float(dice[rows, cols].mean())}
