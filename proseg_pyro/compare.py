"""The paper's comparison on one dataset: train (or reuse) every method, score all on one test split.

:func:`compare` trains each trainable method into ``OUT/METHOD/`` (an existing run with the same
settings is reused, an interrupted one resumed), evaluates every method on the same test images
with the same seed and number of samples, adds the crowdsourcing references (which fuse the test
annotations themselves) and, on the built-in set, the oracle (fresh annotations from the true
rater model). :class:`Comparison` renders, as Markdown and JSON:

* the paper's Table 1/3 layout: GED, D_soft, D_max, D_match, D_A1..D_AR, D_mean, one
  personalised and one prior row per method;
* Table 9's decomposition GED = 2 d_pa - d_pp - d_aa;
* the expert distance matrix (1 - IoU between the raters' test annotations) and, per method, how far
  the distances between its personalised predictions are from it;
* a paired Wilcoxon signed-rank test over test images of ProSeg against every method, per metric.
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
from .evaluate import COLUMNS, HEADERS, Predictions, oracle_predictions, predict, score
from .io_utils import atomic_write_text
from .names import CONSENSUS_NAMES, TRAINABLE
from .train import fit

REFERENCE = "proseg"
ALL_METHODS = TRAINABLE + CONSENSUS_NAMES
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
    ``per_image``: the same two rows -> metric -> (N,) values (for the paired tests);
    ``prediction_distances``: (R, R) mean 1 - IoU between its personalised predictions for two raters;
    ``train_seconds``: training time (None for methods without training).
    """

    kind: str  # "trained", "consensus" or "oracle"
    rows: dict[str, dict]
    per_image: dict[str, dict[str, list[float]]]
    prediction_distances: list[list[float]]
    train_seconds: float | None = None


@dataclass
class Comparison:
    """Every method's results, the experts' distance matrix and the paired tests against ProSeg.

    ``tests[method][row][metric]`` = ``{"difference": mean of ProSeg - method, "p": p-value, "images": n}``.
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
        parts = [f"# Comparison on {s['data']}: test split, {s['images']} images, {s['samples']} samples",
                 f"Image size {s['image_size']}, up to {s['epochs']} epochs per method, seed {s['seed']}, "
                 f"metric convention '{s['convention']}'. GED: lower is better; Dice scores: higher is better.",
                 "## Table 1/3: diversity (GED, D_soft, D_max, D_match) and personalisation (D_Ai)",
                 self._table_main(), self._notes(),
                 "## Table 9: GED = 2 d_pa - d_pp - d_aa", self._table_ged(),
                 "## Expert distance matrix (1 - IoU between raters' test annotations)", self._table_experts()]
        if self.tests:
            parts += [f"## Paired Wilcoxon signed-rank tests over test images: {REFERENCE} vs each method",
                      "Each cell: mean over images of (ProSeg - method), p-value (two-sided). For GED a negative "
                      "difference favours ProSeg, for the Dice scores a positive one; * marks p < 0.05.",
                      *[self._table_tests(row) for row in ROWS]]
        return "\n\n".join(part for part in parts if part) + "\n"

    # --- tables ------------------------------------------------------------------------------------
    def _table_main(self) -> str:
        names = [HEADERS[c] for c in COLUMNS] + [f"D_{r}" for r in self.raters] + ["D_mean", "train s"]
        lines = _header(["method", "row", *names])
        for method, result in self.results.items():
            for row_name, row in result.rows.items():
                values = [row[c] for c in COLUMNS] + list(row["dice_rater"]) + [row["dice_mean"]]
                seconds = "" if result.train_seconds is None else f"{result.train_seconds:.0f}"
                lines.append(_line([method, row_name, *(f"{v:.4f}" for v in values), seconds]))
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
                star = "*" if test["p"] < 0.05 else ""
                cells.append(f"{test['difference']:+.4f} (p={test['p']:.2g}){star}")
            lines.append(_line([method, *cells]))
        return "\n".join(lines)


def _header(names: list[str]) -> list[str]:
    return [_line(names), "|" + "---|" * len(names)]


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# --- scoring ---------------------------------------------------------------------------------------
def score_predictions(test: SliceSet, predictions: Predictions, convention: str, kind: str,
                      train_seconds: float | None = None) -> MethodResult:
    """Summary rows (as ``proseg-pyro evaluate``), per-image metrics and prediction distances."""
    rows, _ = score(test, predictions, convention)
    annotations = test.annotations.astype(bool)
    per_image = {}
    for row, probs, paired in (("personalised", predictions.personalised, True), ("prior", predictions.prior, False)):
        values = metrics.batch_metrics(annotations, test.mask, probs, convention, paired=paired)
        values["dice_mean"] = np.nanmean(values["dice_rater" if paired else "dice_rater_matched"], axis=1)
        per_image[row] = {metric: values[metric].tolist() for metric in TESTED}
    distances = metrics.expert_distance_matrix(predictions.personalised, None, convention)
    return MethodResult(kind, rows, per_image, distances.tolist(), train_seconds)


def consensus_predictions(name: str, test: SliceSet, num_samples: int) -> Predictions:
    """A crowdsourcing reference's one mask per test image, as every rater's prediction and every sample."""
    fused = CONSENSUS[name](test.annotations, test.mask)[:, None]  # (N, 1, H, W)
    return Predictions(np.repeat(fused, len(test.raters), axis=1), np.repeat(fused, num_samples, axis=1))


def paired_test(reference: list[float], other: list[float]) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired per-image values (NaN pairs dropped).

    Zero differences are split between the signs (``zero_method="zsplit"``); all-zero differences
    give p = 1, no pairs p = NaN.
    """
    a, b = np.asarray(reference, dtype=float), np.asarray(other, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if len(a) == 0:
        return {"difference": float("nan"), "p": float("nan"), "images": 0}
    if np.all(a == b):
        return {"difference": 0.0, "p": 1.0, "images": int(len(a))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on small samples; the p-value is still exact or normal
        p = float(wilcoxon(a, b, zero_method="zsplit").pvalue)
    return {"difference": float(np.mean(a - b)), "p": p, "images": int(len(a))}


def paired_tests(results: dict[str, MethodResult]) -> dict[str, dict[str, dict[str, dict]]]:
    """ProSeg against every other method: method -> row -> metric -> :func:`paired_test`."""
    if REFERENCE not in results:
        return {}
    ours = results[REFERENCE].per_image
    return {name: {row: {metric: paired_test(ours[row][metric], result.per_image[row][metric]) for metric in TESTED}
                   for row in ROWS}
            for name, result in results.items() if name != REFERENCE}


# --- training --------------------------------------------------------------------------------------
def train_or_reuse(config: ProSegConfig, train_set: SliceSet, val_set: SliceSet, out_dir: Path,
                   device: torch.device | str = "cpu", force: bool = False, progress: bool = True):
    """Train ``config.method`` into ``out_dir``, resuming (or, if finished, reusing) the run there.

    Returns ``(model, guide, seconds)``: the model and guide of ``out_dir/best.pt`` and the training
    time over all its epochs. ``force`` starts afresh instead of continuing the saved run (which
    :func:`~proseg_pyro.train.fit` refuses to continue with another config).
    """
    result = fit(config, train_set, val_set, out_dir, device=device, resume=not force, progress=progress)
    model, guide, _ = load_checkpoint(out_dir / "best.pt", device, method=config.method)
    return model, guide, sum(row["seconds"] for row in result.history)


def builtin_set(num_images: int, config: ProSegConfig) -> tuple[SliceSet, SyntheticTruth]:
    """The built-in synthetic set as every command loads it, and the truth that generated it."""
    slices = load_dataset("synthetic", config=config, num_images=num_images, seed=config.seed)
    return slices, make_synthetic(num_images, config.image_size, config.seed)[1]


def compare(slices: SliceSet, config: ProSegConfig, methods: list[str], out_dir: str | Path, num_samples: int = 50,
            device: torch.device | str = "cpu", convention: str = "paper", truth: SyntheticTruth | None = None,
            force: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> Comparison:
    """Train or reuse ``methods`` on ``slices``' train/val splits and score them all on its test split.

    ``config`` holds the shared hyperparameters (its ``method`` is replaced per method; its seed
    seeds training and sampling); ``truth`` (the built-in set's) adds the oracle rows.
    """
    if num_samples < len(slices.raters):
        raise ConfigError(f"samples: D_match pairs every rater with a sample, so {len(slices.raters)} raters need "
                          f"at least {len(slices.raters)} samples, got {num_samples}")
    out_dir = Path(out_dir)
    train_set, val_set, test = slices.split("train"), slices.split("val"), slices.split("test")
    if len(train_set) == 0 or len(test) == 0:
        raise ProSegError(f"{slices.name or 'dataset'}: compare needs non-empty 'train' and 'test' splits")
    comparison = Comparison(list(slices.raters), {
        "data": slices.name or "dataset", "images": len(test), "samples": num_samples, "convention": convention,
        "image_size": config.image_size, "epochs": config.epochs, "seed": config.seed, "methods": methods})
    for name in methods:
        tic = time.perf_counter()
        if name in CONSENSUS:
            result = score_predictions(test, consensus_predictions(name, test, num_samples), convention, "consensus")
        else:
            model, guide, seconds = train_or_reuse(config.replace(method=name), train_set, val_set, out_dir / name,
                                                   device, force, progress)
            predictions = predict(model, guide, test.images, num_samples, device=device, seed=config.seed)
            result = score_predictions(test, predictions, convention, "trained", seconds)
        comparison.results[name] = result
        log(f"{name}: done in {time.perf_counter() - tic:.0f} s")
    if truth is not None:
        test_index = np.flatnonzero(np.array(slices.splits) == "test")
        comparison.results["oracle"] = score_predictions(
            test, oracle_predictions(truth, test_index, num_samples, config.seed), convention, "oracle")
    comparison.expert_distances = metrics.expert_distance_matrix(test.annotations, test.mask, convention).tolist()
    comparison.tests = paired_tests(comparison.results)
    return comparison
