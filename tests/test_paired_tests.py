"""Paired tests of per-case scores: Wilcoxon signed-rank with ties and missing values, Holm's correction."""
from __future__ import annotations

import numpy as np
import pytest

from proseg_pyro.paired_tests import holm, paired_test, paired_tests


def test_paired_test_handles_ties_missing_values_and_clear_differences():
    assert paired_test([0.5, 0.7], [0.5, 0.7]) == {"difference": 0.0, "p": 1.0, "cases": 2}
    assert paired_test([np.nan], [0.3])["cases"] == 0
    better = np.linspace(0.6, 0.9, 12)
    result = paired_test(better, better - 0.1 + np.linspace(0, 0.01, 12))
    assert result["p"] < 0.01 and result["difference"] > 0 and result["cases"] == 12
    with_zeros = paired_test([0.5, 0.5, 0.6, 0.7, np.nan], [0.5, 0.4, 0.5, 0.6, 0.1])
    assert with_zeros["cases"] == 4 and 0 < with_zeros["p"] <= 1


def test_holm_adjusts_by_rank_and_keeps_the_order():
    # sorted 0.01, 0.02, 0.04 of m = 3: x3, x2, x1 -> 0.03, 0.04, 0.04 (made non-decreasing)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, float("nan"), 0.6]) == pytest.approx([1.0, float("nan"), 1.0], nan_ok=True)


def test_paired_tests_adjust_over_the_methods_and_skip_without_the_reference():
    ours = {"row": {"score": list(np.linspace(0.6, 0.9, 12))}}
    worse = {"row": {"score": list(np.linspace(0.6, 0.9, 12) - 0.1 + np.linspace(0, 0.01, 12))}}
    tests = paired_tests({"ours": ours, "a": worse, "b": ours}, "ours", ("score",))
    a, b = tests["a"]["row"]["score"], tests["b"]["row"]["score"]
    assert b["p"] == 1.0 and b["p_holm"] == 1.0
    assert a["p_holm"] == pytest.approx(min(1.0, 2 * a["p"]))  # the smaller of two p-values, times two
    assert paired_tests({"a": worse}, "ours", ("score",)) == {}
