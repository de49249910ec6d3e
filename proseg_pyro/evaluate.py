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
from tqdm.auto import tqdm

from . import metric_table, metrics
from .data.slices import SliceSet
from .data.synthetic import SyntheticTruth
from .inference import takes_alpha_star
from .io_utils import atomic_write_text
from .methods import get_method



@dataclass
class Predictions:
    """Foreground probabilities: ``personalised`` (N, R, H, W) and ``prior`` (N, S, H, W)."""

    personalised: np.ndarray
    prior: np.ndarray


EMPTY_SCORES = {  # how an empty annotation and an empty prediction score, per metric convention
    "paper": "an empty annotation with an empty prediction scores Dice 1 and IoU 1 (distance 0), "
             "with a non-empty one 0",
    "dpersona": "an empty annotation with an empty prediction scores Dice 1 but IoU 0 (distance 1), "
                "with a non-empty one 0",
}


@dataclass
class Evaluation:
    """Summary ``rows`` (name -> metric -> value), the raters and the cross-rater Dice matrix.

    ``cross_rater_dice[i, j]``: mean Dice of rater ``i``'s annotations with the prediction made
    in rater ``j``'s style; a model that learned each style has its row maxima on the diagonal.
    ``units``: the scored units (a case volume, or a slice), each with its ``id`` and metrics of
    each row (name -> metric -> value). ``style_sizes``: each rater's size relative to the other
    raters (:func:`~proseg_pyro.metrics.relative_sizes`) in the ``annotated`` masks and in the
    ``personalised`` predictions, and their Pearson ``r`` across raters: styles that kept apart
    reproduce who outlines larger and who smaller.
    """

    raters: list[str]
    rows: dict[str, dict] = field(default_factory=dict)
    cross_rater_dice: dict[str, list[list[float]]] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    units: list[dict] = field(default_factory=list)
    style_sizes: dict = field(default_factory=dict)

    def to_json(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(
            {"raters": self.raters, "settings": self.settings, "rows": self.rows,
             "cross_rater_dice": self.cross_rater_dice, "style_sizes": self.style_sizes,
             "cases" if self.settings.get("per") == "case" else "slices":
             self.units}, indent=2) + "\n")

    def header(self) -> str:
        """What the table's numbers are means of, and how empty masks score."""
        per, convention = self.settings.get("per", "slice"), self.settings.get("convention", "paper")
        unit = "case volume" if per == "case" else "slice"
        count = len(self.units)
        units = f"{count} {unit}{'' if count == 1 else 's'}" if count else f"{unit}s"
        return (f"Means over {units} ({self.settings.get('samples')} samples, convention "
                f"{convention}: {EMPTY_SCORES[convention]}; a rater who did not annotate a {unit} is left out of it)")

    def markdown(self) -> str:
        """The paper's table: GED, D_soft, D_max, D_match, D_A1..D_AR, D_mean, d_pa, d_pp, d_aa."""
        names = metric_table.headers(metric_table.COLUMNS, self.raters)
        lines = [self.header(), "", "| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for row_name, row in self.rows.items():
            values = metric_table.values(row, metric_table.COLUMNS)
            lines.append(f"| {row_name} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
        if self.style_sizes:
            sizes = self.style_sizes
            pairs = ", ".join(f"{rater} {a:.3f}/{p:.3f}" for rater, a, p in
                              zip(self.raters, sizes["annotated"], sizes["personalised"]))
            lines += ["", f"Relative size of each rater's outlines, annotated/personalised: {pairs}; "
                          f"Pearson r across raters {sizes['r']:.3f}"]
        cross = self.cross_rater_dice.get("personalised")
        if cross is not None and len(self.raters) > 1:
            lines += ["", f"Own style best (cross-rater Dice): {own_style_best(cross)} of {len(self.raters)} raters; "
                          f"Dice with the own style minus with another's {metric_table.signed(style_margin(cross))}"]
        return "\n".join(lines)


@torch.no_grad()
def predict(model: PyroModule, guide: PyroModule, images: np.ndarray, num_samples: int,
            batch_size: int = 8, device: torch.device | str = "cpu", seed: int = 0,
            progress: bool = False) -> Predictions:
    """Personalised means and prior samples for ``images`` (N, C, H, W), ``batch_size`` at a time
    (a progress bar with ``progress``, shown on a terminal only)."""
    model.eval(), guide.eval()
    method = get_method(model.config.method)
    raters = list(range(model.config.num_raters))
    personal, prior = [], []
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)
        for start in tqdm(range(0, len(images), batch_size), desc="evaluate", unit="batch",
                          disable=None if progress else True, leave=False):
            # a copy of the batch: ``images`` may be a read-only map of the slice cache
            x = torch.as_tensor(np.array(images[start:start + batch_size]), dtype=torch.float32, device=device)
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


def score_units(slices: SliceSet, per: str = "case") -> list[tuple[str, np.ndarray]]:
    """The scored units: ``per="case"`` each case's slices (in order) as one volume, ``"slice"`` each slice."""
    if per == "slice":
        return [(f"{case}#{index}", np.array([index])) for index, case in enumerate(slices.case_ids)]
    if per != "case":
        raise ValueError(f"per must be 'case' or 'slice', got {per!r}")
    groups: dict[str, list[int]] = {}
    for index, case in enumerate(slices.case_ids):
        groups.setdefault(case, []).append(index)
    return [(case, np.array(index)) for case, index in groups.items()]


def _mean_present(values: list[float]) -> float:
    """The mean of the values that are not NaN (NaN if none is)."""
    present = np.asarray(values, dtype=float)
    present = present[~np.isnan(present)]
    return float(present.mean()) if present.size else float("nan")


def _volume(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Slices ``index`` of ``array`` (S, L, H, W) as one volume (1, L, Z, H, W)."""
    return array[index].transpose(1, 0, 2, 3)[None]


def _unit_scores(annotations: np.ndarray, mask: np.ndarray, probs: np.ndarray, index: np.ndarray,
                 convention: str, paired: bool) -> dict[str, np.ndarray]:
    """The scores of one unit (slices ``index`` as one volume), each with a leading axis of 1: those of
    :func:`~proseg_pyro.metrics.batch_metrics` and those of the table's own :attr:`~proseg_pyro.metric_table.Column.score`."""
    volume, annotated, predicted = _volume(annotations, index), mask[index].all(0), _volume(probs, index)
    scores = metrics.batch_metrics(volume, annotated[None], predicted, convention, paired=paired)
    for column in metric_table.scored_here():
        scores[column.key] = np.array([column.score(volume[0][annotated], predicted[0])], dtype=float)
    return scores


def score(slices: SliceSet, predictions: Predictions, convention: str = "paper", per: str = "case"
          ) -> tuple[dict, dict]:
    """Summary rows and cross-rater Dice matrices of :func:`score_table`."""
    rows, cross, _ = score_table(slices, predictions, convention, per)
    return rows, cross


def zero_padding(slices: SliceSet, predictions: Predictions) -> Predictions:
    """``predictions`` of ``slices`` with every probability outside the slices' image (in the padding
    that stacks slices of different sizes, :meth:`SliceSet.inside`) set to 0, in place: padding is
    not part of the scan, so a prediction there is neither right nor wrong."""
    inside = slices.inside()
    if inside is not None and not inside.all():
        for maps in (predictions.personalised, predictions.prior):
            np.multiply(maps, inside[:, None], out=maps)
    return predictions


def score_table(slices: SliceSet, predictions: Predictions, convention: str = "paper", per: str = "case"
                ) -> tuple[dict, dict, list[dict]]:
    """Summary rows ``{"personalised": ..., "prior": ...}``, their cross-rater Dice matrices and
    each unit's metrics (``D_mean`` among them, from the per-rater Dice the table reports),
    scoring each case volume (``per="case"``; a rater counts for a case only if it annotated all
    its slices) or each slice (``per="slice"``), on the slices' image only (:func:`zero_padding`)."""
    predictions = zero_padding(slices, predictions)
    annotations = slices.annotations.astype(bool)
    units = score_units(slices, per)
    rows, cross, unit_rows = {}, {}, [{"id": name, "slices": len(index)} for name, index in units]
    for name, probs, paired in (("personalised", predictions.personalised, True),
                                ("prior", predictions.prior, False)):
        per_unit = [_unit_scores(annotations, slices.mask, probs, index, convention, paired) for _, index in units]
        stacked = {key: np.concatenate([values[key] for values in per_unit]) for key in per_unit[0]}
        row = metrics.summarise(stacked)
        row["dice_rater"] = metrics.table_rater_dice(row, convention, paired)
        row["dice_mean"] = float(np.nanmean(row["dice_rater"]))
        rows[name] = row
        for unit_row, values in zip(unit_rows, per_unit):
            unit_row[name] = {key: value[0].tolist() if value.ndim == 2 else float(value[0])
                              for key, value in values.items()}
            unit_row[name]["dice_mean"] = _mean_present(metrics.table_rater_dice(unit_row[name], convention, paired))
    matrices = [metrics.mean_dice_matrix(_volume(annotations, index), slices.mask[index].all(0)[None],
                                         _volume(predictions.personalised, index), convention) for _, index in units]
    cross["personalised"] = metrics.summarise({"dice": np.stack(matrices)})["dice"]
    return rows, cross, unit_rows


def evaluate(model: PyroModule, guide: PyroModule, slices: SliceSet, num_samples: int = 50,
             convention: str = "paper", device: torch.device | str = "cpu", seed: int = 0,
             batch_size: int = 8, per: str = "case", progress: bool = False) -> Evaluation:
    """Personalised and prior rows of the paper's table for ``slices``, scored per case volume
    (default) or per slice (``per="slice"``)."""
    predictions = predict(model, guide, slices.images, num_samples, batch_size, device, seed, progress)
    rows, cross, units = score_table(slices, predictions, convention, per)  # zeroes the padding of ``predictions``
    prior = {"alpha_star": model.config.alpha_star} if takes_alpha_star(model) else {}
    return Evaluation(list(slices.raters), rows, cross,
                      {"samples": num_samples, "convention": convention, "images": len(slices), "seed": seed,
                       "per": per, **prior}, units, style_sizes(slices, predictions))


def own_style_best(cross: np.ndarray) -> int:
    """How many raters' annotations match the prediction in their own style strictly best: rows of
    the cross-rater Dice matrix (R, R) whose diagonal exceeds every other entry (a tie, as between
    identical predictions, or a rater without annotations counts for none)."""
    cross = np.asarray(cross, float)
    others = np.where(np.eye(len(cross), dtype=bool) | np.isnan(cross), -np.inf, cross)
    return int((np.diag(cross) > others.max(axis=1)).sum())


def style_margin(cross: np.ndarray) -> float:
    """Mean Dice of the annotations with their own style's prediction minus the mean with another
    rater's (cross-rater Dice matrix (R, R)): 0 where the styles are all the same, NaN where there is
    no pair to compare (one rater, or no scored entry on or off the diagonal)."""
    cross = np.asarray(cross, float)
    own, others = np.diag(cross), cross[~np.eye(len(cross), dtype=bool)]
    if np.isnan(own).all() or np.isnan(others).all():
        return float("nan")
    return float(np.nanmean(own) - np.nanmean(others))


def style_sizes(slices: SliceSet, predictions: Predictions) -> dict:
    """Each rater's relative size in the annotations and in the personalised predictions of
    ``slices`` (R,) each, and their Pearson ``r`` across raters (NaN where either does not vary)."""
    annotated = metrics.relative_sizes(slices.annotations, slices.mask)
    personalised = metrics.relative_sizes(predictions.personalised)
    both = ~(np.isnan(annotated) | np.isnan(personalised))
    varies = both.sum() > 1 and annotated[both].std() > 0 and personalised[both].std() > 0
    r = float(np.corrcoef(annotated[both], personalised[both])[0, 1]) if varies else float("nan")
    return {"annotated": annotated.tolist(), "personalised": personalised.tolist(), "r": r}
