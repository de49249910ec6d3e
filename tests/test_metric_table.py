"""The one table of reported scores: titles and values in table order, and a score added from outside."""
from __future__ import annotations

import numpy as np
import pytest

from proseg_pyro import metric_table
from proseg_pyro.checkpoint import load_checkpoint
from proseg_pyro.compare import compare
from proseg_pyro.data.slices import SliceSet
from proseg_pyro.evaluate import Predictions, evaluate, score_table
from proseg_pyro.metric_table import Column
from proseg_pyro.train import fit

from .conftest import tiny_config


def test_titles_and_values_expand_the_per_rater_column():
    main = metric_table.columns("main")
    row = {"ged": 0.5, "dice_soft": 0.6, "dice_max": 0.7, "dice_match": 0.8, "dice_rater": [0.1, 0.2],
           "dice_mean": 0.15}
    assert metric_table.headers(main, ["a", "b"]) == ["GED", "D_soft", "D_max", "D_match", "D_a", "D_b", "D_mean"]
    assert metric_table.values(row, main) == [0.5, 0.6, 0.7, 0.8, 0.1, 0.2, 0.15]
    assert metric_table.compared_keys() == ("ged", "dice_soft", "dice_max", "dice_match", "dice_mean")
    assert metric_table.direction(metric_table.column("ged")) == "lower is better"
    with pytest.raises(KeyError, match="no reported score"):
        metric_table.column("nonsense")


def _predicted_share(annotations: np.ndarray, probabilities: np.ndarray) -> float:
    """Share of the predictions' pixels above 0.5."""
    return float((probabilities > 0.5).mean())


@pytest.fixture
def predicted_share(monkeypatch):
    """A new score reported for this test only."""
    monkeypatch.setattr(metric_table, "COLUMNS", metric_table.COLUMNS)
    return metric_table.register(Column("predicted_share", "share", lower_is_better=None, score=_predicted_share))


def test_a_registered_score_is_computed_per_case_and_averaged(predicted_share):
    assert [column.key for column in metric_table.columns("main")][-1] == "predicted_share"
    with pytest.raises(ValueError, match="already reported"):
        metric_table.register(predicted_share)
    annotations = np.zeros((3, 2, 2, 2), np.uint8)
    slices = SliceSet(np.zeros((3, 1, 2, 2), np.float32), annotations, np.ones((3, 2), bool), ["a", "b"],
                      ["background", "lesion"], ["s1", "s1", "s2"], ["c1", "c1", "c2"])
    personalised = np.zeros((3, 2, 2, 2), np.float32)
    personalised[0, 0, 0, 0] = personalised[2, :, :, 0] = 0.9  # case c1: 1 of 16 pixels, case c2: 4 of 8
    rows, _, cases = score_table(slices, Predictions(personalised, np.zeros((3, 4, 2, 2), np.float32)))
    assert [case["personalised"]["predicted_share"] for case in cases] == pytest.approx([1 / 16, 0.5])
    assert rows["personalised"]["predicted_share"] == pytest.approx((1 / 16 + 0.5) / 2)
    assert rows["prior"]["predicted_share"] == 0.0


def test_a_registered_score_reaches_evaluate_and_compare_end_to_end(predicted_share, tiny_set, tmp_path):
    slices, _ = tiny_set
    config = tiny_config(steps=1, val_every=1).fitted_to(slices)
    fit(config, slices.split("train"), slices.split("val"), tmp_path / "run", progress=False)
    model, guide, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    evaluation = evaluate(model, guide, slices.split("test"), num_samples=4)
    assert 0.0 <= evaluation.rows["personalised"]["predicted_share"] <= 1.0
    assert "| D_mean | share | d_pa |" in evaluation.markdown().splitlines()[2]
    comparison = compare(slices, config, ["proseg", "majority_vote"], tmp_path / "compare", num_samples=4,
                         progress=False, log=lambda _: None)
    test = comparison.tests["majority_vote"]["personalised"]["predicted_share"]
    assert test["cases"] == len({case for case, split in zip(slices.case_ids, slices.splits) if split == "test"})
    assert "share" in comparison.markdown()


@pytest.mark.parametrize("value,text", [(0.5, "+0.5000"), (-0.00012, "-0.0001"), (-1e-6, "+0.0000"), (0.0, "+0.0000"),
                                        (float("nan"), "")])
def test_signed_differences_never_read_minus_zero(value, text):
    assert metric_table.signed(value) == text
