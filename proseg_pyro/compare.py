"""The paper's comparison on one dataset: train (or reuse) every method, score all on one test split.

:func:`compare` trains each trainable method into ``OUT/METHOD/`` (an existing run with the same
settings is reused, an interrupted one resumed), evaluates every method on the same test cases
(each case scored as one, a volume's slices together, as ``proseg-pyro evaluate`` scores) with
the same seed and number of samples, adds the crowdsourcing references (which fuse the test
annotations themselves) and, on the built-in set, the oracle (fresh annotations from the true
rater model), and returns a :class:`~proseg_pyro.comparison.Comparison` (its tables, the expert
distance matrix, and paired Wilcoxon tests over test cases of ProSeg against every method with
Holm's correction).

The race is fair when asked for: every method gets the same step budget, its learning rate is
picked from ``lr_grid`` by the validation Dice of its first seed (``OUT/METHOD/lr<rate>_seed<s>/``)
or given per method in ``method_lr`` (a pick carried over from a cheaper grid, recorded in the
tables), and it is trained with every one of ``seeds``; the tables give the mean and standard deviation over
the seeds, and flag a method whose personalised predictions are empty on every test image.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import metric_table, metrics
from .baselines import CONSENSUS
from .checkpoint import load_checkpoint
from .comparison import ROWS, Comparison, MethodResult, over_seeds, tests_against_reference
from .config import ProSegConfig
from .data import load_dataset
from .data.slices import SliceSet
from .data.synthetic import SyntheticTruth, make_synthetic
from .errors import ConfigError, ProSegError
from .evaluate import (Predictions, oracle_predictions, own_style_best, predict, score_table, score_units, style_margin,
                       style_sizes)
from .methods import trainable
from .names import CONSENSUS_NAMES
from .schedule import total_steps
from .train import TrainResult, fit


def all_methods() -> list[str]:
    """Every method a comparison can hold, in the table's order: the registered methods (those registered
    after import too), then the consensus references."""
    return [*trainable(), *CONSENSUS_NAMES]


def parse_methods(spec: str) -> list[str]:
    """``"all"`` or a comma-separated list of method names -> names in the table's order."""
    known = all_methods()
    if spec.strip() == "all":
        return known
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        raise ConfigError(f"methods: unknown {unknown or spec!r}; choose 'all' or from {known}")
    return [name for name in known if name in names]


# --- scoring ---------------------------------------------------------------------------------------
def score_predictions(test: SliceSet, predictions: Predictions, convention: str, kind: str,
                      train_seconds: float | None = None) -> MethodResult:
    """Summary rows and per-case metrics, each case volume scored as one (as ``proseg-pyro
    evaluate`` scores), and the distances between the personalised predictions (per slice)."""
    rows, cross, cases = score_table(test, predictions, convention)  # zeroes the padding of ``predictions``
    tested = metric_table.compared_keys()
    per_case = {row: {metric: [case[row][metric] for case in cases] for metric in tested} for row in ROWS}
    distances = metrics.expert_distance_matrix(predictions.personalised, None, convention)
    empty_slices = (predictions.personalised.reshape(len(test), -1) <= 0.5).all(1)
    empty = float(np.mean([empty_slices[index].all() for _, index in score_units(test)]))
    styles = {"own_best": own_style_best(cross["personalised"]), "margin": style_margin(cross["personalised"]),
              "size_r": style_sizes(test, predictions)["r"]}
    return MethodResult(kind, rows, per_case, distances.tolist(), train_seconds, empty, styles=styles)


def consensus_predictions(name: str, test: SliceSet, num_samples: int) -> Predictions:
    """A crowdsourcing reference's one mask per test image, as every rater's prediction and every sample."""
    fused = CONSENSUS[name](test.annotations, test.mask)[:, None]  # (N, 1, H, W)
    return Predictions(np.repeat(fused, len(test.raters), axis=1), np.repeat(fused, num_samples, axis=1))


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


def parse_method_lr(spec: str) -> dict[str, float]:
    """``"dpersona=3e-3,unet_pooled=3e-3"`` -> ``{"dpersona": 0.003, "unet_pooled": 0.003}`` (``""`` -> ``{}``)."""
    rates = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, rate = item.partition("=")
        try:
            rates[name.strip()] = float(rate)
        except ValueError:
            raise ConfigError(f"method_lr: {item!r} is not METHOD=RATE, e.g. dpersona=3e-3") from None
    return rates


def check_method_lr(method_lr: dict[str, float], methods: list[str]) -> None:
    """Refuse a per-method rate for a method not raced, one that is not trained, or one that is not positive."""
    for name, rate in method_lr.items():
        if name not in methods or name in CONSENSUS:
            raise ConfigError(f"method_lr: {name!r} is not a trained method of this comparison "
                              f"({', '.join(m for m in methods if m not in CONSENSUS)})")
        if not 0 < rate < float("inf"):
            raise ConfigError(f"method_lr: {name}'s learning rate must be positive and finite, got {rate}")


def builtin_set(num_images: int, config: ProSegConfig) -> tuple[SliceSet, SyntheticTruth]:
    """The built-in synthetic set as every command loads it, and the truth that generated it."""
    slices = load_dataset("synthetic", config=config, num_images=num_images, seed=config.seed)
    return slices, make_synthetic(num_images, config.image_size, config.seed)[1]


def compare(slices: SliceSet, config: ProSegConfig, methods: list[str], out_dir: str | Path, num_samples: int = 50,
            device: torch.device | str = "cpu", convention: str = "paper", truth: SyntheticTruth | None = None,
            force: bool = False, progress: bool = True, log: Callable[[str], None] = print,
            seeds: list[int] | None = None, lr_grid: list[float] | None = None,
            method_lr: dict[str, float] | None = None) -> Comparison:
    """Train or reuse ``methods`` on ``slices``' train/val splits and score them all on its test split.

    ``config`` holds the shared hyperparameters, the step budget among them (its ``method``, and
    ``lr`` and ``seed`` where ``lr_grid`` and ``seeds`` are given, are replaced per run; default:
    the config's seed and rate); ``method_lr`` maps a method to the one rate it runs at instead of
    the grid's pick; ``truth`` (the built-in set's) adds the oracle rows.
    """
    seeds, lr_grid, method_lr = list(seeds or [config.seed]), list(lr_grid or []), dict(method_lr or {})
    check_method_lr(method_lr, methods)
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
        "lr_grid": lr_grid, "method_lr": method_lr, "methods": methods})
    for name in methods:
        tic = time.perf_counter()
        if name in CONSENSUS:
            result = score_predictions(test, consensus_predictions(name, test, num_samples), convention, "consensus")
        else:
            fixed = name in method_lr
            result = race(config.replace(method=name, lr=method_lr.get(name, config.lr)), train_set, val_set, test,
                          out_dir, num_samples, convention, seeds, [] if fixed else lr_grid, device, force, progress)
        comparison.results[name] = result
        log(f"{name}: done in {time.perf_counter() - tic:.0f} s")
    if truth is not None:
        test_index = np.flatnonzero(np.array(slices.splits) == "test")
        comparison.results["oracle"] = score_predictions(
            test, oracle_predictions(truth, test_index, num_samples, config.seed), convention, "oracle")
    comparison.expert_distances = metrics.expert_distance_matrix(test.annotations, test.mask, convention).tolist()
    comparison.tests = tests_against_reference(comparison.results)
    return comparison
