"""The example scripts run end to end at tiny size."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = ["--image-size", "16", "--images", "24", "--steps", "2", "--samples", "4", "--width", "8"]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_posterior_predictive_example():
    result = _load("posterior_predictive").main(TINY)
    assert len(result["predicted"]) == len(result["observed"]) == 4
    assert all(0 <= value <= 1 for value in result["predicted"])


def test_swap_prior_example():
    rows = _load("swap_prior").main(TINY)
    assert set(rows) == {"dirichlet", "logistic_normal", "sparse_dirichlet"}
    for row in rows.values():
        assert math.isfinite(row["prior"]["ged"]) and math.isfinite(row["personalised"]["dice_mean"])


@pytest.mark.parametrize("script", sorted(p.stem for p in EXAMPLES.glob("*.py")))
def test_every_example_has_a_main(script):
    assert callable(getattr(_load(script), "main", None))
