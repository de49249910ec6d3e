"""The paper's comparison on one dataset: train (or reuse) every method, score all on one test split.

:func:`compare` trains each trainable method into ``OUT/METHOD/`` (an existing run with the same
settings is reused, an interrupted one resumed), evaluates every method on the same test cases
(each case scored as one, a volume's slices together, as ``proseg-pyro evaluate`` scores) with
the same seed and number of samples, adds the crowdsourcing references (which fuse the test
annotations themselves) and, on the built-in set, the oracle (fresh annotations from the true
rater model). :class:`Comparison` renders, as Markdown and JSON:

* the paper's Table 1/3 layout: GED, D_soft, D_max, D_match, D_A1..D_AR, D_mean, one
  personalised and one prior row per method;
* Table 9's decomposition GED = 2 d_pa - d_pp - d_aa;
* the expert distance matrix (1 - IoU between the raters' test annotations) and, per method, how far
  the distances between its personalised predictions are from it;
* a paired Wilcoxon signed-rank test over test cases of ProSeg against every method, per metric,
  with Holm's correction over the methods.

The race is fair when asked for: every method gets the same step budget, its learning rate is
picked from ``lr_grid`` by the validation Dice of its first seed (``OUT/METHOD/lr<rate>_seed<s>/``),
and it is trained with every one of ``seeds``; the tables give the mean and standard deviation over
the seeds, and flag a method whose personalised predictions are empty on every test image.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.stats import wilcoxon

from . import metrics
from .baselines import CONSENSUS
from .checkpoint import load_checkpoint
from .config import ProSegConfig
from .data import load_dataset
from .data.slices import SliceSet
from .data.synthetic import SyntheticTruth, make_synthetic
from .errors import ConfigError, ProSegError
from .evaluate import COLUMNS, HEADERS, Predictions, oracle_predictions, predict, score_table, score_units
from .io_utils import atomic_write_text
from .methods import trainable
from .names import CONSENSUS_NAMES
from .protocol import mean_and_spread
from .schedule import total_steps
from .train import TrainResult, fit

REFERENCE = "proseg"
ALL_METHODS = trainable() + CONSENSUS_NAMES
ROWS = ("personalised", "prior")
TESTED = COLUMNS + ("dice_mean",)  # metrics compared per image
LOWER_IS_BETTER = frozenset({"ged"})
NOTES = {
    "prob_unet": "not rater-conditioned: its personalised row scores unconditional samples against each rater",
    "majority_vote": "fuses the test image's own annotations: a reference, not a prediction from the image",
    "staple": "fuses the test image's own annotations: a reference, not a prediction from the image",
    "oracle": "fresh annotations from the true rater model of the built-in set: the best achievable",
}


def parse_methods(spec: str) -> list[str]:
    """``"all"`` or a comma-separated list of method names -> names in the table's order."""
    if spec.strip() == "all":
        return list(ALL_METHODS)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ALL_METHODS))
    if unknown or not names:
        raise ConfigError(f"methods: unknown {unknown or spec!r}; choose 'all' or from {list(ALL_METHODS)}")
    return [name for name in ALL_METHODS if name in names]


@dataclass
class MethodResult:
    """One method's scores on the test split.

    ``rows``: ``"personalised"``/``"prior"`` -> the summary row of :func:`proseg_pyro.evaluate.score`;
    ``per_case``: the same two rows -> metric -> one value per test case (for the paired tests);
    ``prediction_distances``: (R, R) mean 1 - IoU between its personalised predictions for two raters;
    ``train_seconds``: training time, summed over seeds (None for methods without training);
    ``empty_share``: share of test cases on which every personalised prediction is empty.
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
                 f"({spread}), learning rates {s['lr_grid'] or 'of the config'}, metric convention "
                 f"'{s['convention']}'. GED: lower is better; Dice scores: higher is better. `empty`: share of test "
                 "cases whose personalised predictions are all empty (1.00: the method predicts nothing).",
                 "## Table 1/3: diversity (GED, D_soft, D_max, D_match) and personalisation (D_Ai)",
                 self._table_main(), self._notes(),
                 "## Table 9: GED = 2 d_pa - d_pp - d_aa", self._table_ged(),
                 "## Expert distance matrix (1 - IoU between raters' test annotations)", self._table_experts()]
        if self.tests:
            parts += [f"## Paired Wilcoxon signed-rank tests over test cases: {REFERENCE} vs each method",
                      "Each cell: mean over cases (and seeds) of (ProSeg - method), p-value (two-sided, Holm-adjusted "
                      "over the methods). For GED a negative difference favours ProSeg, for the Dice scores a "
                      "positive one; * marks an adjusted p < 0.05.",
                      *[self._table_tests(row) for row in ROWS]]
        return "\n\n".join(part for part in parts if part) + "\n"

    # --- tables ------------------------------------------------------------------------------------
    def _table_main(self) -> str:
        names = [HEADERS[c] for c in COLUMNS] + [f"D_{r}" for r in self.raters] + ["D_mean", "empty", "lr", "train s"]
        lines = _header(["method", "row", *names])
        for method, result in self.results.items():
            for row_name, row in result.rows.items():
                sd = result.spread.get(row_name, {})
                cells = [_mean_sd(row[c], sd.get(c)) for c in COLUMNS] + [f"{v:.4f}" for v in row["dice_rater"]]
                cells += [_mean_sd(row["dice_mean"], sd.get("dice_mean")), f"{result.empty_share:.2f}",
                          "" if result.lr is None else f"{result.lr:g}",
                          "" if result.train_seconds is None else f"{result.train_seconds:.0f}"]
                lines.append(_line([method, row_name, *cells]))
        return "\n".join(lines)

    def _notes(self) -> str:
        return "\n".join(f"- `{name}`: {NOTES[name]}" for name in self.results if name in NOTES)

    def _table_ged(self) -> str:
        lines = _header(["method", "row", "GED", "d_pa", "d_pp", "d_aa"])
        for method, result in self.results.items():
            for row_name, row in result.rows.items():
                lines.append(_line([method, row_name, *(f"{row[c]:.4f}" for c in ("ged", "d_pa", "d_pp", "d_aa"))]))
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

    def _table_tests(self, row: str) -> str:
        lines = [f"{row} rows:", "", *_header(["method", *(HEADERS.get(m, "D_mean") for m in TESTED)])]
        for method, by_row in self.tests.items():
            cells = []
            for metric in TESTED:
                test = by_row[row][metric]
                star = "*" if test["p_holm"] < 0.05 else ""
                cells.append(f"{test['difference']:+.4f} (p={test['p_holm']:.2g}){star}")
            lines.append(_line([method, *cells]))
        return "\n".join(lines)


def _mean_sd(mean: float, sd: float | None) -> str:
    return f"{mean:.4f}" if sd is None else f"{mean:.4f} +- {sd:.4f}"


def _header(names: list[str]) -> list[str]:
    return [_line(names), "|" + "---|" * len(names)]


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# --- scoring ---------------------------------------------------------------------------------------
def score_predictions(test: SliceSet, predictions: Predictions, convention: str, kind: str,
                      train_seconds: float | None = None) -> MethodResult:
    """Summary rows and per-case metrics, each case volume scored as one (as ``proseg-pyro
    evaluate`` scores), and the distances between the personalised predictions (per slice)."""
    rows, _, cases = score_table(test, predictions, convention)
    per_case = {row: {metric: [case[row][metric] for case in cases] for metric in TESTED} for row in ROWS}
    distances = metrics.expert_distance_matrix(predictions.personalised, None, convention)
    empty_slices = (predictions.personalised.reshape(len(test), -1) <= 0.5).all(1)
    empty = float(np.mean([empty_slices[index].all() for _, index in score_units(test)]))
    return MethodResult(kind, rows, per_case, distances.tolist(), train_seconds, empty)


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
                       for key in TESTED}
    per_case = {row: {metric: mean([result.per_case[row][metric] for result in results])
                      for metric in first.per_case[row]} for row in first.per_case}
    return MethodResult(first.kind, rows, per_case, mean([result.prediction_distances for result in results]),
                        sum(result.train_seconds or 0.0 for result in results),
                        float(np.mean([result.empty_share for result in results])), spread=spread)


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
            spread[row] = {key: sd[key] for key in TESTED}
        per_case = {row: {metric: [value for each in results for value in each.per_case[row][metric]]
                          for metric in result.per_case[row]} for row in result.per_case}
        seconds = [each.train_seconds for each in results if each.train_seconds is not None]
        merged.results[method] = MethodResult(
            result.kind, rows, per_case, mean([each.prediction_distances for each in results]),
            sum(seconds) if seconds else None, float(np.average([each.empty_share for each in results], weights=cases)),
            result.seeds, spread, lr=None, lr_scores={})
    merged.expert_distances = mean([fold.expert_distances for fold in folds])
    merged.tests = paired_tests(merged.results)
    return merged


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (NaN stays NaN): the k-th smallest of m is
    multiplied by m - k + 1, made non-decreasing in that order, and capped at 1."""
    values = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(values, np.nan)
    finite = np.flatnonzero(~np.isnan(values))
    order = finite[np.argsort(values[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def consensus_predictions(name: str, test: SliceSet, num_samples: int) -> Predictions:
    """A crowdsourcing reference's one mask per test image, as every rater's prediction and every sample."""
    fused = CONSENSUS[name](test.annotations, test.mask)[:, None]  # (N, 1, H, W)
    return Predictions(np.repeat(fused, len(test.raters), axis=1), np.repeat(fused, num_samples, axis=1))


def paired_test(reference: list[float], other: list[float]) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired per-case values (NaN pairs dropped).

    Zero differences are split between the signs (``zero_method="zsplit"``); all-zero differences
    give p = 1, no pairs p = NaN.
    """
    a, b = np.asarray(reference, dtype=float), np.asarray(other, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if len(a) == 0:
        return {"difference": float("nan"), "p": float("nan"), "cases": 0}
    if np.all(a == b):
        return {"difference": 0.0, "p": 1.0, "cases": int(len(a))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on small samples; the p-value is still exact or normal
        p = float(wilcoxon(a, b, zero_method="zsplit").pvalue)
    return {"difference": float(np.mean(a - b)), "p": p, "cases": int(len(a))}


def paired_tests(results: dict[str, MethodResult]) -> dict[str, dict[str, dict[str, dict]]]:
    """ProSeg against every other method: method -> row -> metric -> :func:`paired_test`."""
    if REFERENCE not in results:
        return {}
    ours = results[REFERENCE].per_case
    others = [name for name in results if name != REFERENCE]
    tests = {name: {row: {metric: paired_test(ours[row][metric], results[name].per_case[row][metric])
                          for metric in TESTED} for row in ROWS} for name in others}
    for row in ROWS:
        for metric in TESTED:
            adjusted = holm([tests[name][row][metric]["p"] for name in others])
            for name, p in zip(others, adjusted):
                tests[name][row][metric]["p_holm"] = p
    return tests


# --- training --------------------------------------------------------------------------------------
def train_or_reuse(config: ProSegConfig, train_set: SliceSet, val_set: SliceSet, out_dir: Path,
                   device: torch.device | str = "cpu", force: bool = False, progress: bool = True) -> TrainResult:
    """Train ``config.method`` into ``out_dir``, resuming (or, if finished, reusing) the run there.
    ``force`` starts afresh instead of continuing the saved run (which
    :func:`~proseg_pyro.train.fit` refuses to continue with another config)."""
    return fit(config, train_set, val_set, out_dir, device=device, resume=not force, progress=progress)


def _run_dir(out_dir: Path, method: str, lr: float, seed: int, plain: bool) -> Path:
    """``OUT/METHOD`` for a single run, ``OUT/METHOD/lr<lr>_seed<seed>`` in a race of several."""
    return out_dir / method if plain else out_dir / method / f"lr{lr:g}_seed{seed}"


def race(config: ProSegConfig, train_set: SliceSet, val_set: SliceSet, test: SliceSet, out_dir: Path,
         num_samples: int, convention: str, seeds: list[int], lr_grid: list[float],
         device: torch.device | str = "cpu", force: bool = False, progress: bool = True) -> MethodResult:
    """``config.method`` trained with the rate of ``lr_grid`` whose first-seed run reached the best
    validation Dice (the config's rate without a grid), then with every seed, scored on ``test``
    and summarised over the seeds (:func:`over_seeds`)."""
    plain = not lr_grid and len(seeds) == 1
    run = lambda lr, seed: train_or_reuse(  # noqa: E731
        config.replace(lr=lr, seed=seed), train_set, val_set, _run_dir(out_dir, config.method, lr, seed, plain),
        device, force, progress)
    scores = {lr: run(lr, seeds[0]).best_score for lr in lr_grid}
    lr = max(scores, key=scores.get) if scores else config.lr
    results = []
    for seed in seeds:
        trained = run(lr, seed)
        model, guide, _ = load_checkpoint(trained.out_dir / "best.pt", device, method=config.method)
        predictions = predict(model, guide, test.images, num_samples, device=device, seed=seed)
        results.append(score_predictions(test, predictions, convention, "trained",
                                         sum(row["seconds"] for row in trained.history)))
    result = over_seeds(results)
    result.seeds, result.lr, result.lr_scores = list(seeds), lr, {f"{rate:g}": score for rate, score in scores.items()}
    return result


def builtin_set(num_images: int, config: ProSegConfig) -> tuple[SliceSet, SyntheticTruth]:
    """The built-in synthetic set as every command loads it, and the truth that generated it."""
    slices = load_dataset("synthetic", config=config, num_images=num_images, seed=config.seed)
    return slices, make_synthetic(num_images, config.image_size, config.seed)[1]


def compare(slices: SliceSet, config: ProSegConfig, methods: list[str], out_dir: str | Path, num_samples: int = 50,
            device: torch.device | str = "cpu", convention: str = "paper", truth: SyntheticTruth | None = None,
            force: bool = False, progress: bool = True, log: Callable[[str], None] = print,
            seeds: list[int] | None = None, lr_grid: list[float] | None = None) -> Comparison:
    """Train or reuse ``methods`` on ``slices``' train/val splits and score them all on its test split.

    ``config`` holds the shared hyperparameters, the step budget among them (its ``method``, and
    ``lr`` and ``seed`` where ``lr_grid`` and ``seeds`` are given, are replaced per run; default:
    the config's seed and rate); ``truth`` (the built-in set's) adds the oracle rows.
    """
    seeds, lr_grid = list(seeds or [config.seed]), list(lr_grid or [])
    if num_samples < len(slices.raters):
        raise ConfigError(f"samples: D_match pairs every rater with a sample, so {len(slices.raters)} raters need "
                          f"at least {len(slices.raters)} samples, got {num_samples}")
    out_dir = Path(out_dir)
    train_set, val_set, test = slices.split("train"), slices.split("val"), slices.split("test")
    if len(train_set) == 0 or len(test) == 0:
        raise ProSegError(f"{slices.name or 'dataset'}: compare needs non-empty 'train' and 'test' splits")
    comparison = Comparison(list(slices.raters), {
        "data": slices.name or "dataset", "images": len(test), "cases": len(score_units(test)),
        "samples": num_samples, "convention": convention,
        "image_size": config.image_size, "steps": total_steps(config, len(train_set)), "seeds": seeds,
        "lr_grid": lr_grid, "methods": methods})
    for name in methods:
        tic = time.perf_counter()
        if name in CONSENSUS:
            result = score_predictions(test, consensus_predictions(name, test, num_samples), convention, "consensus")
        else:
            result = race(config.replace(method=name), train_set, val_set, test, out_dir, num_samples, convention,
                          seeds, lr_grid, device, force, progress)
        comparison.results[name] = result
        log(f"{name}: done in {time.perf_counter() - tic:.0f} s")
    if truth is not None:
        test_index = np.flatnonzero(np.array(slices.splits) == "test")
        comparison.results["oracle"] = score_predictions(
            test, oracle_predictions(truth, test_index, num_samples, config.seed), convention, "oracle")
    comparison.expert_distances = metrics.expert_distance_matrix(test.annotations, test.mask, convention).tolist()
    comparison.tests = paired_tests(comparison.results)
    return comparison
