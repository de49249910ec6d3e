"""Paired tests of per-case scores between methods: Wilcoxon signed-rank with Holm's correction."""
from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import wilcoxon


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


def paired_tests(per_case: dict[str, dict[str, dict[str, list[float]]]], reference: str, metrics: tuple[str, ...]
                 ) -> dict[str, dict[str, dict[str, dict]]]:
    """``reference`` against every other method, each of ``per_case`` (method -> row -> metric -> one
    value per case, the same cases in the same order): method -> row -> metric -> :func:`paired_test`
    with ``"p_holm"``, the p-value adjusted over the methods (:func:`holm`). Empty without ``reference``."""
    if reference not in per_case:
        return {}
    ours = per_case[reference]
    others = [name for name in per_case if name != reference]
    rows = list(ours)
    tests = {name: {row: {metric: paired_test(ours[row][metric], per_case[name][row][metric])
                          for metric in metrics} for row in rows} for name in others}
    for row in rows:
        for metric in metrics:
            adjusted = holm([tests[name][row][metric]["p"] for name in others])
            for name, p in zip(others, adjusted):
                tests[name][row][metric]["p_holm"] = p
    return tests
