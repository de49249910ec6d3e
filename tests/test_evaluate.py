"""Table rows from predictions: perfect predictions, the oracle, and the report formats."""
from __future__ import annotations

import json

import numpy as np
import pytest

from proseg_pyro.data.slices import SliceSet
from proseg_pyro.evaluate import (Evaluation, Predictions, oracle_predictions, own_style_best, score, score_table,
                                  style_margin, style_sizes)


def test_predictions_equal_to_the_annotations_score_perfectly(tiny_set):
    slices, _ = tiny_set
    test = slices.split("test")
    exact = test.annotations.astype(np.float32)
    rows, cross = score(test, Predictions(personalised=exact, prior=exact))
    personal = rows["personalised"]
    assert personal["dice_rater"] == pytest.approx([1.0] * 4)
    assert personal["ged"] == pytest.approx(0.0, abs=1e-12)
    assert personal["dice_match"] == pytest.approx(1.0)
    assert personal["d_pp"] == pytest.approx(personal["d_aa"])
    assert np.diag(cross["personalised"]) == pytest.approx([1.0] * 4)
    assert rows["prior"]["dice_mean"] == pytest.approx(1.0)


def test_oracle_rows_know_each_raters_style(tiny_set):
    slices, truth = tiny_set
    test = slices.split("test")
    index = np.flatnonzero(np.array(slices.splits) == "test")
    oracle = oracle_predictions(truth, index, num_samples=20, seed=1)
    assert oracle.personalised.shape == test.annotations.shape
    assert oracle.prior.shape == (len(test), 20, 16, 16)
    rows, cross = score(test, oracle)
    matrix = np.array(cross["personalised"])
    # the smooth raters' own oracle predictions beat every other rater's style
    for rater in (0, 1, 3):
        assert matrix[rater, rater] == matrix[rater].max()
    assert rows["personalised"]["dice_mean"] > 0.9
    assert rows["prior"]["d_pp"] > rows["personalised"]["d_pp"]  # draws of random raters spread wider


def test_markdown_and_json(tmp_path, tiny_set):
    slices, _ = tiny_set
    test = slices.split("test")
    exact = test.annotations.astype(np.float32)
    rows, cross = score(test, Predictions(exact, exact))
    result = Evaluation(list(test.raters), rows, cross, {"samples": 1, "per": "case", "convention": "paper"},
                        [{"id": case} for case in test.case_ids])
    table = result.markdown()
    assert table.splitlines()[0].startswith(f"Means over {len(test)} case volumes (1 samples, convention paper: "
                                            "an empty annotation with an empty prediction scores Dice 1")
    assert table.splitlines()[2].startswith("| method | GED | D_soft | D_max | D_match | D_tight")
    assert len(table.splitlines()) == 8  # exact predictions: each rater's own style is its best
    assert table.splitlines()[-1].startswith("Own style best (cross-rater Dice): 4 of 4 raters")
    result.to_json(tmp_path / "out.json")
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["rows"]["personalised"]["dice_rater"] == pytest.approx([1.0] * 4)


def test_a_case_volume_is_scored_as_one_and_slices_on_request():
    """One case of two 4x4 slices, one rater: slice 0 holds 4 lesion pixels predicted exactly, slice
    1 none, where the prediction has 2. Per slice: Dice 1 and 0 (an empty annotation against a
    non-empty prediction), mean 0.5; per case volume: 2 * 4 / (4 + 6) = 0.8."""
    annotations = np.zeros((2, 1, 4, 4), np.int64)
    annotations[0, 0, :2, :2] = 1
    prediction = annotations.astype(np.float32)
    prediction[1, 0, 3, 2:] = 1.0
    slices = SliceSet(np.zeros((2, 1, 4, 4), np.float32), annotations, np.ones((2, 1), bool), ["A"],
                      ["background", "lesion"], ["s", "s"], ["case", "case"])
    predictions = Predictions(prediction, np.repeat(prediction, 2, axis=1))
    rows, _, cases = score_table(slices, predictions, per="case")
    assert rows["personalised"]["dice_rater"] == pytest.approx([0.8])
    assert [case["id"] for case in cases] == ["case"] and cases[0]["personalised"]["dice_rater"] == [0.8]
    rows, _, units = score_table(slices, predictions, per="slice")
    assert rows["personalised"]["dice_rater"] == pytest.approx([0.5]) and len(units) == 2


def test_dpersona_rows_report_matched_rater_dice():
    # rater a1 drew 2 pixels, a2 4; the second image's personalised predictions come swapped
    ann = np.array([[[[1, 1, 0, 0]], [[1, 1, 1, 1]]]] * 2)
    probs = np.array([[[[0.9, 0.9, 0, 0]], [[0.9, 0.9, 0.9, 0]]],
                      [[[0.9, 0.9, 0.9, 0]], [[0.9, 0.9, 0, 0]]]], np.float32)
    slices = SliceSet(np.zeros((2, 1, 1, 4), np.float32), ann, np.ones((2, 2), bool), ["a1", "a2"],
                      ["background", "lesion"], ["s1", "s2"], ["c1", "c2"])
    paper, _ = score(slices, Predictions(probs, probs), "paper")
    released, _ = score(slices, Predictions(probs, probs), "dpersona")
    # Dice a1: 1 with the 2-pixel, 4/5 with the 3-pixel prediction; a2: 2/3 and 6/7
    assert paper["personalised"]["dice_rater"] == pytest.approx([(1 + 4 / 5) / 2, (6 / 7 + 2 / 3) / 2])
    assert released["personalised"]["dice_rater"] == pytest.approx([1, 6 / 7])
    assert released["personalised"]["dice_mean"] == pytest.approx(released["personalised"]["dice_match"])
    assert paper["prior"]["dice_rater"] == pytest.approx([1, 6 / 7])  # a set of samples: matched


def test_released_rules_on_a_case_volume():
    """One case of two 1x4 slices under the released rules: rater a1 drew 2 pixels on slice 0, a2
    nothing; the personalised predictions come swapped (a1's is empty, a2's is a1's mask). Over the
    volume, IoU of two empty masks is 0 (distance 1) but their Dice 1; D_Ai is Hungarian-matched,
    so D_mean equals D_match; the fixed pairing would score 0 for both."""
    annotations = np.zeros((2, 2, 1, 4), np.int64)
    annotations[0, 0, 0, :2] = 1
    swapped = annotations[:, ::-1].astype(np.float32)
    slices = SliceSet(np.zeros((2, 1, 1, 4), np.float32), annotations, np.ones((2, 2), bool), ["a1", "a2"],
                      ["background", "lesion"], ["s", "s"], ["case", "case"])
    released, _, cases = score_table(slices, Predictions(swapped, swapped), "dpersona")
    row = released["personalised"]
    assert row["dice_rater"] == pytest.approx([1.0, 1.0]) and row["dice_mean"] == pytest.approx(row["dice_match"])
    assert row["dice_max"] == pytest.approx(1.0)  # each prediction's best annotation
    # distances over the volume: a1-a1 0, the empty a2 at 1 from a1 and from itself
    assert (row["d_aa"], row["d_pp"], row["d_pa"], row["ged"]) == pytest.approx((3 / 4, 3 / 4, 3 / 4, 0.0))
    assert cases[0]["personalised"]["dice_mean"] == pytest.approx(1.0)
    paper, _, _ = score_table(slices, Predictions(swapped, swapped), "paper")
    assert paper["personalised"]["dice_rater"] == pytest.approx([0.0, 0.0])  # the fixed pairing
    assert paper["personalised"]["d_aa"] == pytest.approx(1 / 2)  # two empty masks: IoU 1


def test_style_sizes_compare_who_outlines_larger():
    """Three raters outline 2, 4 and 6 pixels (0.5, 1.0, 1.5 of the mean). Predictions that keep
    the order but shrink the spread correlate perfectly; predictions all of one size do not vary."""
    annotations = np.zeros((1, 3, 4, 4), np.int64)
    for rater, size in enumerate((2, 4, 6)):
        annotations[0, rater].flat[:size] = 1
    slices = SliceSet(np.zeros((1, 1, 4, 4), np.float32), annotations, np.ones((1, 3), bool), ["a", "b", "c"],
                      ["background", "lesion"], ["s"], ["case"])
    shrunk = np.zeros((1, 3, 4, 4), np.float32)
    for rater, size in enumerate((3, 4, 5)):
        shrunk[0, rater].flat[:size] = 0.9
    sizes = style_sizes(slices, Predictions(shrunk, shrunk))
    assert sizes["annotated"] == pytest.approx([0.5, 1.0, 1.5])
    assert sizes["personalised"] == pytest.approx([0.75, 1.0, 1.25]) and sizes["r"] == pytest.approx(1.0)
    same = np.repeat(shrunk[:, 1:2], 3, axis=1)
    assert np.isnan(style_sizes(slices, Predictions(same, same))["r"])


def test_own_style_best_counts_strict_row_maxima_on_the_diagonal():
    """Rater 0 ties another style (counts for none), rater 1 wins, rater 2 loses, rater 3 annotated nothing."""
    cross = np.array([[0.9, 0.5, 0.9, 0.1],
                      [0.4, 0.8, 0.7, 0.1],
                      [0.3, 0.6, 0.5, 0.1],
                      [np.nan, np.nan, np.nan, np.nan]])
    assert own_style_best(cross) == 1
    # diagonal (0.9 + 0.8 + 0.5) / 3 against the nine other present entries, (0.5 + 0.9 + 0.1 + 0.4 + 0.7 + 0.1
    # + 0.3 + 0.6 + 0.1) / 9
    assert style_margin(cross) == pytest.approx(2.2 / 3 - 3.7 / 9)
    assert own_style_best(np.full((3, 3), 0.7)) == 0 and style_margin(np.full((3, 3), 0.7)) == pytest.approx(0.0)


@pytest.mark.filterwarnings("error")  # and no "mean of empty slice" on the way
@pytest.mark.parametrize("cross", [[[0.8]], [[np.nan, np.nan], [np.nan, np.nan]]])
def test_a_style_margin_without_a_pair_to_compare_is_nan(cross):
    assert np.isnan(style_margin(np.array(cross)))


def test_predictions_in_the_padding_count_for_nothing():
    """Two 4x4 slices whose image is the top-left 2x2: exact predictions inside, foreground in the padding."""
    annotations = np.zeros((2, 2, 4, 4), np.uint8)
    annotations[:, :, 0, 0] = 1
    slices = SliceSet(np.zeros((2, 1, 4, 4), np.float32), annotations, np.ones((2, 2), bool), ["a", "b"],
                      ["background", "lesion"], ["s", "t"], ["c1", "c2"], regions=np.array([[0, 0, 2, 2]] * 2))
    personalised = annotations.astype(np.float32)
    personalised[:, :, 3, 3] = 0.9  # in the padding
    prior = np.repeat(personalised[:, :1], 3, axis=1)
    rows, _, _ = score_table(slices, Predictions(personalised, prior))
    assert rows["personalised"]["dice_match"] == pytest.approx(1.0) and rows["personalised"]["ged"] == 0.0
    assert rows["prior"]["dice_max"] == pytest.approx(1.0)
    assert personalised[:, :, 3, 3].max() == 0.0  # zeroed in place
