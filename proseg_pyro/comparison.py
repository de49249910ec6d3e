"""The results of a comparison of methods on one test split, and their tables (Markdown, JSON).

:class:`Comparison` renders the paper's Table 1/3 layout (GED, D_soft, D_max, D_match, D_A1..D_AR,
D_mean; one personalised and one prior row per method), Table 9's decomposition GED = 2 d_pa - d_pp
- d_aa, the expert distance matrix beside each method's, and the paired tests against ProSeg.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from . import metric_table
from .io_utils import atomic_write_text
from .paired_tests import paired_tests
from .protocol import mean_and_spread

REFERENCE = "proseg"  # the method every other is tested against
ROWS = ("personalised", "prior")
NOTES = {
    "prob_unet": "not rater-conditioned: its personalised row scores unconditional samples against each rater",
    "majority_vote": "fuses the test image's own annotations: a reference, not a prediction from the image",
    "staple": "fuses the test image's own annotations: a reference, not a prediction from the image",
    "oracle": "fresh annotations from the true rater model of the built-in set: the best achievable",
}


@dataclass
class MethodResult:
    """One method's scores on the test split.

    ``rows``: ``"personalised"``/``"prior"`` -> the summary row of :func:`proseg_pyro.evaluate.score`;
    ``per_case``: the same two rows -> metric -> one value per test case (for the paired tests);
    ``prediction_distances``: (R, R) mean 1 - IoU between its personalised predictions for two raters;
    ``train_seconds``: training time, summed over seeds (None for methods without training);
    ``empty_share``: share of test cases on which every personalised prediction is empty;
    ``styles``: how well the personalised predictions keep the raters apart: ``own_best`` (raters
    whose annotations match their own style's prediction strictly best), ``margin`` (Dice with the
    own style minus with another's) and ``size_r`` (Pearson r across raters of annotated and
    predicted relative sizes, NaN where either does not vary).
    Over several seeds every value is the mean over seeds (per case for ``per_case``), ``spread``
    holds the standard deviation of each row's metrics over seeds, ``lr`` the learning rate used and
    ``lr_scores`` the validation Dice that each rate of the grid reached.
    """

    kind: str  # "trained", "consensus" or "oracle"
    rows: dict[str, dict]
    per_case: dict[str, dict[str, list[float]]]
    prediction_distances: list[list[float]]
    train_seconds: float | None = None
    empty_share: float = 0.0
    seeds: list[int] = field(default_factory=list)
    spread: dict[str, dict[str, float]] = field(default_factory=dict)
    lr: float | None = None
    lr_scores: dict[str, float] = field(default_factory=dict)
    styles: dict[str, float] = field(default_factory=dict)


@dataclass
class Comparison:
    """Every method's results, the experts' distance matrix and the paired tests against ProSeg.

    ``tests[method][row][metric]`` = ``{"difference": mean of ProSeg - method, "p": p-value, "p_holm":
    Holm-adjusted over the methods, "cases": n}``.
    """

    raters: list[str]
    settings: dict
    results: dict[str, MethodResult] = field(default_factory=dict)
    expert_distances: list[list[float]] = field(default_factory=list)
    tests: dict[str, dict[str, dict[str, dict]]] = field(default_factory=dict)

    def to_json(self, path: str | os.PathLike) -> None:
        content = {"raters": self.raters, "settings": self.settings, "expert_distances": self.expert_distances,
                   "methods": {name: asdict(result) for name, result in self.results.items()},
                   "wilcoxon": self.tests}
        atomic_write_text(path, json.dumps(content, indent=1) + "\n")

    def markdown(self) -> str:
        s = self.settings
        seeds = ", ".join(str(seed) for seed in s["seeds"])
        spread = (f"mean +- sd over the {len(s['folds'])} test folds (ddof 0)" if "folds" in s
                  else "mean +- sd over seeds")
        parts = [f"# Comparison on {s['data']}: test split, {s['cases']} cases ({s['images']} slices), "
                 f"{s['samples']} samples",
                 f"Image size {s['image_size']}, up to {s['steps']} optimiser steps per method, seeds {seeds} "
                 f"({spread}), learning rates {_rates(s)}, metric convention "
                 f"'{s['convention']}'. {_directions()}. `empty`: share of test "
                 "cases whose personalised predictions are all empty (1.00: the method predicts nothing).",
                 "## Table 1/3: diversity (GED, D_soft, D_max, D_match) and personalisation (D_Ai)",
                 self._table_main(), self._notes(),
                 "## Table 9: GED = 2 d_pa - d_pp - d_aa", self._table_ged(),
                 "## Expert distance matrix (1 - IoU between raters' test annotations)", self._table_experts(),
                 "## Rater styles: cross-rater Dice and relative sizes of the personalised predictions",
                 self._table_styles()]
        if self.tests:
            parts += [f"## Paired Wilcoxon signed-rank tests over test cases: {REFERENCE} vs each method",
                      "Each cell: mean over cases (and seeds) of (ProSeg - method), p-value (two-sided, Holm-adjusted "
                      "over the methods). Where lower is better a negative difference favours ProSeg, elsewhere a "
                      "positive one; * marks an adjusted p < 0.05.",
                      *[self._table_tests(row) for row in ROWS]]
        return "\n\n".join(part for part in parts if part) + "\n"

    # --- tables ------------------------------------------------------------------------------------
    def _table_main(self) -> str:
        reported = metric_table.columns("main")
        lines = _header(["method", "row", *metric_table.headers(reported, self.raters), "empty", "lr", "train s"])
        for method, result in self.results.items():
            for row_name, row in result.rows.items():
                sd = result.spread.get(row_name, {})
                cells = [cell for column in reported for cell in (
                    [f"{v:.4f}" for v in row[column.key]] if column.per_rater
                    else [_mean_sd(row[column.key], sd.get(column.key))])]
                cells += [f"{result.empty_share:.2f}", "" if result.lr is None else f"{result.lr:g}",
                          "" if result.train_seconds is None else f"{result.train_seconds:.0f}"]
                lines.append(_line([method, row_name, *cells]))
        return "\n".join(lines)

    def _notes(self) -> str:
        return "\n".join(f"- `{name}`: {NOTES[name]}" for name in self.results if name in NOTES)

    def _table_ged(self) -> str:
        reported = [metric_table.column("ged"), *metric_table.columns("decomposition")]
        lines = _header(["method", "row", *metric_table.headers(reported, self.raters)])
        for method, result in self.results.items():
            for row_name, row in result.rows.items():
                lines.append(_line([method, row_name, *(f"{v:.4f}" for v in metric_table.values(row, reported))]))
        return "\n".join(lines)

    def _table_experts(self) -> str:
        lines = _header(["", *self.raters])
        lines += [_line([rater, *(f"{v:.3f}" for v in row)]) for rater, row in zip(self.raters, self.expert_distances)]
        experts = np.array(self.expert_distances)
        off_diagonal = ~np.eye(len(self.raters), dtype=bool)
        lines += ["", "Distances between each method's personalised predictions for two raters, against the experts':",
                  "", *_header(["method", "mean |difference| (off-diagonal)", "mean distance", "experts' mean"])]
        for method, result in self.results.items():
            ours = np.array(result.prediction_distances)
            gap = np.nanmean(np.abs(ours - experts)[off_diagonal])
            lines.append(_line([method, f"{gap:.3f}", f"{np.nanmean(ours[off_diagonal]):.3f}",
                                f"{np.nanmean(experts[off_diagonal]):.3f}"]))
        return "\n".join(lines)

    def _table_styles(self) -> str:
        lines = [f"`own style best`: raters (of {len(self.raters)}) whose annotations match the prediction in their "
                 "own style strictly better than any other rater's style; `margin`: Dice with the own style minus "
                 "with another's; `size r`: Pearson r across raters between how large each rater outlines and how "
                 "large the predictions in its style are (blank where the predictions' sizes do not vary).", "",
                 *_header(["method", "own style best", "margin", "size r"])]
        for method, result in self.results.items():
            if result.styles:
                styles = result.styles
                lines.append(_line([method, f"{styles['own_best']:.3g}", metric_table.signed(styles['margin']),
                                    "" if np.isnan(styles["size_r"]) else f"{styles['size_r']:.3f}"]))
        return "\n".join(lines)

    def _table_tests(self, row: str) -> str:
        lines = [f"{row} rows:", "", *_header(["method", *metric_table.headers(metric_table.compared(), self.raters)])]
        for method, by_row in self.tests.items():
            cells = []
            for metric in metric_table.compared_keys():
                test = by_row[row][metric]
                star = "*" if test["p_holm"] < 0.05 else ""
                cells.append(f"{test['difference']:+.4f} (p={test['p_holm']:.2g}){star}")
            lines.append(_line([method, *cells]))
        return "\n".join(lines)


def _directions() -> str:
    """Each compared score's direction, e.g. ``GED: lower is better; D_soft: higher is better``."""
    return "; ".join(f"{column.header.format(rater='i')}: {metric_table.direction(column)}"
                     for column in metric_table.compared())


def _rates(settings: dict) -> str:
    """Where each method's learning rate came from: the grid (or the config), and any rates given per method."""
    fixed = settings.get("method_lr") or {}
    given = "; given: " + ", ".join(f"{name} {rate:g}" for name, rate in fixed.items()) if fixed else ""
    return f"{settings['lr_grid'] or 'of the config'}{given}"


def _mean_sd(mean: float, sd: float | None) -> str:
    return f"{mean:.4f}" if sd is None else f"{mean:.4f} +- {sd:.4f}"


def _header(names: list[str]) -> list[str]:
    return [_line(names), "|" + "---|" * len(names)]


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def over_seeds(results: list[MethodResult]) -> MethodResult:
    """One method's results with several seeds as one: means (per case, per matrix entry, per row
    value) and, per row, the standard deviation over seeds of its scalar metrics."""
    first = results[0]
    if len(results) == 1:
        return first
    mean = lambda values: np.mean(np.array(values, dtype=float), axis=0).tolist()  # noqa: E731
    rows, spread = {}, {}
    for row in first.rows:
        rows[row] = {key: mean([result.rows[row][key] for result in results]) for key in first.rows[row]}
        spread[row] = {key: float(np.std([result.rows[row][key] for result in results], ddof=1))
                       for key in metric_table.compared_keys()}
    per_case = {row: {metric: mean([result.per_case[row][metric] for result in results])
                      for metric in first.per_case[row]} for row in first.per_case}
    return MethodResult(first.kind, rows, per_case, mean([result.prediction_distances for result in results]),
                        sum(result.train_seconds or 0.0 for result in results),
                        float(np.mean([result.empty_share for result in results])), spread=spread,
                        styles=mean_styles([result.styles for result in results]))


def over_folds(comparisons: dict[str, Comparison]) -> Comparison:
    """The comparisons of several test folds (fold name -> :class:`Comparison`) as one: each
    method's rows averaged over folds with their standard deviation (``ddof=0``) as the spread, the
    per-case values of all folds together (so the paired tests run over every test case), and the
    distance matrices, training times and empty shares averaged (times summed)."""
    folds = list(comparisons.values())
    first = folds[0]
    cases = [fold.settings["cases"] for fold in folds]
    settings = {**first.settings, "folds": list(comparisons), "cases": sum(cases),
                "images": sum(fold.settings["images"] for fold in folds),
                "steps": max(fold.settings["steps"] for fold in folds)}
    merged = Comparison(first.raters, settings)
    mean = lambda values: np.mean(np.array(values, dtype=float), axis=0).tolist()  # noqa: E731
    for method, result in first.results.items():
        results = [fold.results[method] for fold in folds]
        rows, spread = {}, {}
        for row in result.rows:
            rows[row], sd = mean_and_spread([each.rows[row] for each in results])
            spread[row] = {key: sd[key] for key in metric_table.compared_keys()}
        per_case = {row: {metric: [value for each in results for value in each.per_case[row][metric]]
                          for metric in result.per_case[row]} for row in result.per_case}
        seconds = [each.train_seconds for each in results if each.train_seconds is not None]
        merged.results[method] = MethodResult(
            result.kind, rows, per_case, mean([each.prediction_distances for each in results]),
            sum(seconds) if seconds else None, float(np.average([each.empty_share for each in results], weights=cases)),
            result.seeds, spread, lr=None, lr_scores={}, styles=mean_styles([each.styles for each in results]))
    merged.expert_distances = mean([fold.expert_distances for fold in folds])
    merged.tests = tests_against_reference(merged.results)
    return merged


def mean_styles(styles: list[dict[str, float]]) -> dict[str, float]:
    """Each style score's mean over seeds or folds (NaN only where every one is NaN)."""
    if not all(styles):
        return {}
    means = {}
    for key in styles[0]:
        values = np.array([each[key] for each in styles], float)
        means[key] = float(np.nan) if np.isnan(values).all() else float(np.nanmean(values))
    return means


def tests_against_reference(results: dict[str, MethodResult]) -> dict[str, dict[str, dict[str, dict]]]:
    """ProSeg against every other method of ``results``: method -> row -> metric -> paired test."""
    return paired_tests({name: result.per_case for name, result in results.items()}, REFERENCE,
                        metric_table.compared_keys())
