"""Sampling and the paper's metrics over a split, as table rows (personalised and prior).

* personalised: one prediction per rater, the mean of ``num_samples`` draws in that rater's style
  (tau ~ q(tau | r), z ~ q(z | x)), scored as a set and per rater (``D_Ai``: the fixed pairing,
  Hungarian-matched under the ``"dpersona"`` convention as in the released evaluation);
* prior: ``num_samples`` draws with tau* ~ Dir(alpha*), scored as a set (``D_Ai`` Hungarian-matched).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from pyro.nn import PyroModule

from . import metrics
from .data.slices import SliceSet
from .data.synthetic import SyntheticTruth
from .io_utils import atomic_write_text
from .methods import get_method

COLUMNS = ("ged", "dice_soft", "dice_max", "dice_match")
HEADERS = {"ged": "GED", "dice_soft": "D_soft", "dice_max": "D_max", "dice_match": "D_match",
           "d_pa": "d_pa", "d_pp": "d_pp", "d_aa": "d_aa"}


@dataclass
class Predictions:
    """Foreground probabilities: ``personalised`` (N, R, H, W) and ``prior`` (N, S, H, W)."""

    personalised: np.ndarray
    prior: np.ndarray


@dataclass
class Evaluation:
    """Summary ``rows`` (name -> metric -> value), the raters and the cross-rater Dice matrix.

    ``cross_rater_dice[i, j]``: mean Dice of rater ``i``'s annotations with the prediction made
    in rater ``j``'s style; a model that learned each style has its row maxima on the diagonal.
    """

    raters: list[str]
    rows: dict[str, dict] = field(default_factory=dict)
    cross_rater_dice: dict[str, list[list[float]]] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def to_json(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(
            {"raters": self.raters, "settings": self.settings, "rows": self.rows,
             "cross_rater_dice": self.cross_rater_dice}, indent=2) + "\n")

    def markdown(self) -> str:
        """The paper's table: GED, D_soft, D_max, D_match, D_A1..D_AR, D_mean, d_pa, d_pp, d_aa."""
        names = [HEADERS[c] for c in COLUMNS] + [f"D_{r}" for r in self.raters] + ["D_mean", "d_pa", "d_pp", "d_aa"]
        lines = ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for row_name, row in self.rows.items():
            values = [row[c] for c in COLUMNS] + list(row["dice_rater"]) + [row["dice_mean"]] + \
                     [row[c] for c in ("d_pa", "d_pp", "d_aa")]
            lines.append(f"| {row_name} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
        return "\n".join(lines)


@torch.no_grad()
def predict(model: PyroModule, guide: PyroModule, images: np.ndarray, num_samples: int,
            batch_size: int = 8, device: torch.device | str = "cpu", seed: int = 0) -> Predictions:
    """Personalised means and prior samples for ``images`` (N, C, H, W), ``batch_size`` at a time."""
    model.eval(), guide.eval()
    method = get_method(model.config.method)
    raters = list(range(model.config.num_raters))
    personal, prior = [], []
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(images), batch_size):
            x = torch.as_tensor(images[start:start + batch_size], dtype=torch.float32, device=device)
            personal.append(method.personalised(model, guide, x, raters, num_samples).mean(0).cpu())
            prior.append(method.prior(model, guide, x, num_samples).transpose(0, 1).cpu())
    return Predictions(torch.cat(personal).numpy(), torch.cat(prior).numpy())


def oracle_predictions(truth: SyntheticTruth, index: np.ndarray, num_samples: int, seed: int = 0) -> Predictions:
    """The same predictions drawn from the true rater model of a synthetic set.

    personalised: rater ``i``'s pixel frequency over ``num_samples`` fresh annotations;
    prior: ``num_samples`` fresh annotations, each by a rater drawn uniformly.
    """
    rng = np.random.default_rng(seed)
    raters = len(truth.styles)
    draws = np.stack([truth.draw(rng, index=index) for _ in range(num_samples)])  # (S, N, R, H, W)
    personalised = draws.mean(0).astype(np.float32)
    pick = rng.integers(0, raters, size=(num_samples, len(index)))
    prior = draws[np.arange(num_samples)[:, None], np.arange(len(index))[None], pick]  # (S, N, H, W)
    return Predictions(personalised, prior.transpose(1, 0, 2, 3).astype(np.float32))


def score(slices: SliceSet, predictions: Predictions, convention: str = "paper") -> tuple[dict, dict]:
    """Summary rows ``{"personalised": ..., "prior": ...}`` and their cross-rater Dice matrices."""
    annotations = slices.annotations.astype(bool)
    rows, cross = {}, {}
    for name, probs, paired in (("personalised", predictions.personalised, True),
                                ("prior", predictions.prior, False)):
        per_image = metrics.batch_metrics(annotations, slices.mask, probs, convention, paired=paired)
        row = metrics.summarise(per_image)
        row["dice_rater"] = metrics.table_rater_dice(row, convention, paired)
        row["dice_mean"] = float(np.nanmean(row["dice_rater"]))
        rows[name] = row
    cross["personalised"] = metrics.mean_dice_matrix(annotations, slices.mask, predictions.personalised,
                                                     convention).tolist()
    return rows, cross


def evaluate(model: PyroModule, guide: PyroModule, slices: SliceSet, num_samples: int = 50,
             convention: str = "paper", device: torch.device | str = "cpu", seed: int = 0,
             batch_size: int = 8) -> Evaluation:
    """Personalised and prior rows of the paper's table for ``slices``."""
    predictions = predict(model, guide, slices.images, num_samples, batch_size, device, seed)
    rows, cross = score(slices, predictions, convention)
    return Evaluation(list(slices.raters), rows, cross,
                      {"samples": num_samples, "convention": convention, "images": len(slices), "seed": seed})
