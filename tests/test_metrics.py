"""Metrics against values worked out by hand."""
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from proseg_pyro.metrics import (
    batch_metrics,
    dice_match_from_matrix,
    dice_max_from_matrix,
    expert_distance_matrix,
    image_metrics,
    matched_dice_from_matrix,
    mean_dice_matrix,
    mean_expert_distance,
    random_expert_distances,
    relative_sizes,
    summarise,
    table_rater_dice,
)

# The paper's Fig. 5: rows are predictions p1..p5, columns annotations r1..r4.
FIG5 = np.array(
    [
        [0.811, 0.801, 0.841, 0.831],
        [0.821, 0.823, 0.801, 0.811],
        [0.832, 0.836, 0.861, 0.841],
        [0.826, 0.822, 0.819, 0.863],
        [0.828, 0.842, 0.812, 0.810],
    ]
)


def grid(*rows):
    """Masks or maps written as nested lists of 2x2 grids -> float64 array (K, 2, 2)."""
    return np.array(rows, dtype=np.float64)


def test_fig5_matrix_helpers():
    dice = FIG5.T  # M[a, p]
    assert dice_max_from_matrix(dice, "paper") == pytest.approx(0.8495)
    assert dice_max_from_matrix(dice, "dpersona") == pytest.approx(0.8460)
    assert dice_match_from_matrix(dice) == pytest.approx(0.84675)
    np.testing.assert_allclose(matched_dice_from_matrix(dice), [0.821, 0.842, 0.861, 0.863])
    with pytest.raises(ValueError, match="at least as many predictions"):
        dice_match_from_matrix(FIG5)  # 5 annotations, 4 predictions


def test_dice_max_from_matrix_batched_with_missing_annotation():
    dice = np.stack([FIG5.T, FIG5.T])
    mask = np.array([[True] * 4, [True, True, True, False]])
    expected = [0.8495, (0.832 + 0.842 + 0.861) / 3]
    np.testing.assert_allclose(dice_max_from_matrix(dice, "paper", mask), expected)
    # dpersona: row maxima over r1..r3 only: .841 .823 .861 .826 .842
    np.testing.assert_allclose(dice_max_from_matrix(dice, "dpersona", mask), [0.846, 4.193 / 5])


# Two annotations and two predictions on a 2x2 grid (binarised predictions: p1 = a2, p2 = 3 pixels).
ANN = grid([[1, 1], [0, 0]], [[1, 0], [0, 0]]).astype(bool)
PROB = grid([[0.9, 0.2], [0.1, 0.0]], [[0.6, 0.7], [0.8, 0.4]])


@pytest.mark.parametrize("convention", ["paper", "dpersona"])
def test_ged_and_dice_by_hand(convention):
    res = image_metrics(ANN, PROB, convention)
    # d = 1 - IoU: a1-a2 1/2; a1-p1 1/2, a1-p2 1/3, a2-p1 0, a2-p2 2/3; p1-p2 2/3; diagonals 0.
    assert res["d_aa"] == pytest.approx(0.25)
    assert res["d_pa"] == pytest.approx(0.375)
    assert res["d_pp"] == pytest.approx(1 / 3)
    assert res["ged"] == pytest.approx(1 / 6)
    # Dice M[a, p] = [[2/3, 0.8], [1, 0.5]]
    assert res["dice_max"] == pytest.approx(0.9)
    assert res["dice_match"] == pytest.approx(0.9)
    assert res["dice_rater_matched"] == pytest.approx([0.8, 1.0])
    assert res["dice_rater"] == pytest.approx([2 / 3, 0.5])  # P == A: fixed pairing
    # mean annotation [[1, .5], [0, 0]], mean probability [[.75, .45], [.45, .2]]:
    # t = .1: 2/3, .3: 4/5, .5: 1 (the 0.5 is not > 0.5), .7: 1, .9: 0 (no probability > .9)
    assert res["dice_soft"] == pytest.approx((2 / 3 + 0.8 + 1 + 1 + 0) / 5)


def test_3d_input_matches_stacked_2d():
    res2d = image_metrics(ANN, PROB)
    res3d = image_metrics(np.stack([ANN, ANN], axis=1), np.stack([PROB, PROB], axis=1))  # (K, 2, 2, 2)
    assert res3d.keys() == res2d.keys()
    for key, value in res2d.items():
        assert res3d[key] == pytest.approx(value), key


def test_dice_max_conventions_differ_on_masks():
    ann = grid([[1, 1], [0, 0]]).astype(bool)
    prob = grid([[1, 1], [0, 0]], [[1, 0], [0, 0]])  # Dice 1 and 2/3
    paper = image_metrics(ann, prob, "paper")
    assert paper["dice_max"] == pytest.approx(1.0)
    assert image_metrics(ann, prob, "dpersona")["dice_max"] == pytest.approx(5 / 6)
    assert paper["dice_match"] == pytest.approx(1.0)
    assert "dice_rater" not in paper  # P != A


def test_empty_masks_follow_convention():
    ann = np.zeros((2, 2, 2), bool)
    prob = grid([[0, 0], [0, 0]], [[1, 0], [0, 0]])  # p1 empty, p2 one pixel
    paper = image_metrics(ann, prob, "paper")
    # IoU(empty, empty) = 1 -> d = 0; IoU(empty, p2) = 0 -> d = 1
    distances = (paper["d_aa"], paper["d_pa"], paper["d_pp"], paper["ged"])
    assert distances == pytest.approx((0, 0.5, 0.5, 0.5))
    assert paper["dice_max"] == pytest.approx(1.0)  # Dice(empty, empty) = 1
    assert paper["dice_match"] == pytest.approx(0.5)
    # mean probability 0.5 at one pixel: t = .1, .3 give Dice(empty, 1 pixel) = 0, then empty-empty 1
    assert paper["dice_soft"] == pytest.approx(0.6)

    dp = image_metrics(ann, prob, "dpersona")
    # IoU(empty, empty) = 0 -> d = 1 everywhere but p2 with itself (d = 1e-8)
    assert (dp["d_aa"], dp["d_pa"], dp["d_pp"], dp["ged"]) == pytest.approx((1, 1, 0.75, 0.25))
    assert dp["dice_max"] == pytest.approx(0.5)  # per prediction: p1 -> 1, p2 -> ~1e-8
    assert dp["dice_match"] == pytest.approx(0.5)
    assert dp["dice_soft"] == pytest.approx(0.6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_soft_dice_thresholds_are_strict(dtype):
    ann = grid([[1, 1], [0, 0]]).astype(bool)
    prob = grid([[0.5, 0.95], [0.3, 0.1]]).astype(dtype)  # three values sit exactly on thresholds
    # > .1: 3 pixels -> 4/5; > .3: 2 -> 1; > .5: 1 -> 2/3; > .7: 1 -> 2/3; > .9: 1 -> 2/3
    expected = (0.8 + 1 + 2 / 3 + 2 / 3 + 2 / 3) / 5
    assert image_metrics(ann, prob)["dice_soft"] == pytest.approx(expected)
    assert image_metrics(ann, torch.from_numpy(prob))["dice_soft"] == pytest.approx(expected)


def test_paired_and_p_smaller_than_a():
    assert "dice_rater" not in image_metrics(ANN, PROB, paired=False)
    with pytest.raises(ValueError, match="one prediction per"):
        image_metrics(ANN, PROB[:1], paired=True)
    with pytest.raises(ValueError, match="at least as many predictions as annotations"):
        image_metrics(ANN, PROB[:1])


@pytest.mark.parametrize(
    "ann, prob, match",
    [
        (ANN[:, 0], PROB[:, 0], "must have shape"),  # 1D spatial
        (ANN, PROB[:, :1], "spatial shapes differ"),
        (ANN[:0], PROB, "must not be empty"),
        (ANN, PROB[:0], "must not be empty"),
        (ANN, np.where(PROB > 0.85, np.nan, PROB), "NaN"),
        (ANN, PROB * 2, r"\[0, 1\]"),
        (ANN, PROB - 0.5, r"\[0, 1\]"),
        (ANN * 2, PROB, "binary"),
        (ANN.astype(float) * 0.5, PROB, "binary"),
        (np.array([["a"]]), PROB, "numeric"),
    ],
)
def test_validation_errors(ann, prob, match):
    with pytest.raises(ValueError, match=match):
        image_metrics(ann, prob)


def test_validation_errors_batched_and_convention():
    ann, prob = ANN[None], PROB[None]
    with pytest.raises(ValueError, match="convention"):
        image_metrics(ANN, PROB, convention="kohl")
    with pytest.raises(ValueError, match="annotation_mask must have shape"):
        batch_metrics(ann, np.ones((1, 3), bool), prob)
    with pytest.raises(ValueError, match="image 0 has no annotations"):
        batch_metrics(ann, np.zeros((1, 2), bool), prob)
    with pytest.raises(ValueError, match="1 images, probabilities 2"):
        batch_metrics(ann, None, np.concatenate([prob, prob]))
    # a missing rater's slot may hold anything; a1 alone vs p1, p2: Dice 2/3, 0.8
    res = batch_metrics(np.array([[ANN[0], ANN[1] * 7]]), np.array([[True, False]]), prob)
    assert res["dice_match"][0] == pytest.approx(0.8)


def random_case(rng, n, n_ann, n_pred, size=(9, 7)):
    centre = rng.random((n, 1, *size))
    level = rng.uniform(0.6, 1.4, (n, n_ann) + (1,) * len(size))
    ann = centre + 0.3 * rng.random((n, n_ann, *size)) > level
    ann[0, 1] = False  # an empty annotation
    prob = rng.integers(0, 11, (n, n_pred, *size)) / 10  # many values exactly on thresholds
    prob[1] = 0.0  # all predictions empty
    mask = rng.random((n, n_ann)) < 0.7
    mask[:, 0] = True
    mask[2] = [True] + [False] * (n_ann - 1)
    return ann, mask, prob


@pytest.mark.parametrize("convention", ["paper", "dpersona"])
def test_batched_equals_per_image(convention):
    rng = np.random.default_rng(0)
    ann, mask, prob = random_case(rng, n=7, n_ann=4, n_pred=6)
    batch = batch_metrics(ann, mask, torch.from_numpy(prob).float(), convention, chunk_size=3)
    for n in range(len(ann)):
        single = image_metrics(ann[n][mask[n]], prob[n].astype(np.float32), convention, paired=False)
        for key, value in single.items():
            got = batch[key][n][mask[n]] if key == "dice_rater_matched" else batch[key][n]
            np.testing.assert_allclose(got, value, rtol=1e-12, atol=1e-12, err_msg=key)
        assert np.isnan(batch["dice_rater_matched"][n][~mask[n]]).all()

    ann, mask, prob = random_case(rng, n=5, n_ann=3, n_pred=3, size=(3, 4, 5))  # 3D, paired
    batch = batch_metrics(ann, mask, prob, convention, paired=True)
    for n in range(len(ann)):
        present = mask[n]
        single = image_metrics(ann[n][present], prob[n][present], convention, paired=True)
        np.testing.assert_allclose(batch["dice_rater"][n][present], single["dice_rater"], rtol=1e-12)
        assert np.isnan(batch["dice_rater"][n][~present]).all()


def naive_metrics(ann, prob, convention):
    """Straight from the definitions, one pair at a time."""
    pred = prob > 0.5
    eps = 1e-8 if convention == "dpersona" else 0.0

    def iou(x, y):
        inter, union = (x & y).sum(), (x | y).sum()
        return 1.0 if union == 0 and convention == "paper" else inter / (union + eps)

    def dice(x, y):
        inter, total = (x & y).sum(), x.sum() + y.sum()
        return 1.0 if total == 0 and convention == "paper" else (2 * inter + eps) / (total + eps)

    def dist(xs, ys):
        return np.mean([1 - iou(x, y) for x in xs for y in ys])

    res = {"d_aa": dist(ann, ann), "d_pa": dist(ann, pred), "d_pp": dist(pred, pred)}
    res["ged"] = 2 * res["d_pa"] - res["d_pp"] - res["d_aa"]
    m = np.array([[dice(a, p) for p in pred] for a in ann])
    res["dice_max"] = m.max(1).mean() if convention == "paper" else m.max(0).mean()
    rows, cols = linear_sum_assignment(-m)
    res["dice_match"] = m[rows, cols].mean()
    thresholds = (0.1, 0.3, 0.5, 0.7, 0.9)
    res["dice_soft"] = np.mean([dice(ann.mean(0) > t, prob.mean(0) > t) for t in thresholds])
    return res


@pytest.mark.parametrize("convention", ["paper", "dpersona"])
def test_matches_naive_definitions(convention):
    rng = np.random.default_rng(2)
    ann, mask, _ = random_case(rng, n=4, n_ann=4, n_pred=5)
    prob = rng.random((4, 5, 9, 7)) ** 3  # continuous: no mean lands on a threshold
    prob[1] = 0.0
    for n in range(4):
        res = image_metrics(ann[n][mask[n]], prob[n], convention)
        for key, value in naive_metrics(ann[n][mask[n]], prob[n], convention).items():
            assert res[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_batched_p_smaller_than_a():
    rng = np.random.default_rng(1)
    ann, mask, prob = random_case(rng, n=3, n_ann=4, n_pred=3)
    mask[0] = True
    with pytest.raises(ValueError, match="at least as many predictions as annotations"):
        batch_metrics(ann, mask, prob)
    mask[:, 3] = False
    batch_metrics(ann, mask, prob)  # at most 3 raters per image: fine


def test_mean_dice_matrix_by_hand():
    # image 0: Dice M[a, p] = [[2/3, 0.8], [1, 0.5]]; image 1: predictions swapped, rater 1 missing
    ann = np.stack([ANN, ANN])
    prob = np.stack([PROB, PROB[::-1]])
    mask = np.array([[True, True], [True, False]])
    expected = [[(2 / 3 + 0.8) / 2, (0.8 + 2 / 3) / 2], [1, 0.5]]
    np.testing.assert_allclose(mean_dice_matrix(ann, mask, prob), expected)
    dice_rater = summarise(batch_metrics(ann, mask, prob, paired=True))["dice_rater"]
    np.testing.assert_allclose(np.diagonal(mean_dice_matrix(ann, mask, prob)), dice_rater)


def test_summarise_ignores_nan():
    out = summarise({"ged": [1.0, np.nan, 3.0], "dice_rater": [[1, np.nan], [3, np.nan]]})
    assert out["ged"] == 2.0
    assert out["dice_rater"][0] == 2.0 and np.isnan(out["dice_rater"][1])


def flat(*masks):
    return np.array(masks, dtype=bool).reshape(len(masks), 2, 2)


# image 0: raters 0, 1, 3; image 1: raters 0, 1, 2 (rater 2 empty)
EXPERTS = np.stack(
    [
        flat([1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]),
        flat([1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]),
    ]
)
EXPERT_MASK = np.array([[True, True, False, True], [True, True, True, False]])


@pytest.mark.parametrize("convention", ["paper", "dpersona"])
def test_expert_distance_matrix_by_hand(convention):
    d = expert_distance_matrix(EXPERTS, EXPERT_MASK, convention)
    # d(0, 1): image 0 1 - 1/3, image 1 1 - 2/4 -> 7/12; pairs with 2 or 3 share no pixel -> 1
    empty_self = 0.0 if convention == "paper" else 1.0  # rater 2 is empty
    expected = np.array(
        [
            [0, 7 / 12, 1, 1],
            [7 / 12, 0, 1, 1],
            [1, 1, empty_self, np.nan],  # raters 2 and 3 never annotated the same image
            [1, 1, np.nan, 0],
        ]
    )
    np.testing.assert_allclose(d, expected, atol=1e-7)


def test_expert_distances_per_image_and_draws():
    expected = [(2 / 3 + 1 + 1) / 3, (0.5 + 1 + 1) / 3]
    np.testing.assert_allclose(mean_expert_distance(EXPERTS, EXPERT_MASK), expected)
    mask = EXPERT_MASK.copy()
    mask[1] = [True, False, False, False]  # a single expert: undefined
    draws = random_expert_distances(EXPERTS, mask, num_draws=4000, rng=0)
    assert draws.shape == (2, 4000) and np.isnan(draws[1]).all()
    assert set(np.round(draws[0], 6)) == {round(2 / 3, 6), 1.0}  # never a mask with itself (d = 0)
    assert np.mean(draws[0] == 1.0) == pytest.approx(2 / 3, abs=0.03)
    np.testing.assert_array_equal(draws, random_expert_distances(EXPERTS, mask, num_draws=4000, rng=0))
    # model samples: probabilities are binarised > 0.5
    samples = np.where(EXPERTS, 0.8, 0.3)[:1]
    # all four masks of image 0 (rater 2's is empty): only d(0, 1) = 2/3 is below 1
    np.testing.assert_allclose(mean_expert_distance(samples), [(2 / 3 + 5) / 6])


# The released evaluation (metrics_set.py of D-Persona/ProSeg) on one image, worked out by hand:
# masks are 1x4 strips; rater a2 drew nothing; p2 binarises to nothing.
STRIP_ANN = np.array([[[1, 1, 0, 0]], [[0, 0, 0, 0]]], bool)
STRIP_PROB = np.array([[[0.9, 0.8, 0.1, 0.0]], [[0.2, 0.2, 0.3, 0.4]], [[0.6, 0.0, 0.0, 0.7]]])


def test_released_evaluation_by_hand_with_an_empty_annotation():
    dp = image_metrics(STRIP_ANN, STRIP_PROB, "dpersona")
    # iou = I / (U + 1e-8), so every pair involving an empty mask, itself included, is at d = 1.
    # d_aa over a1a1 0, a1a2 1, a2a1 1, a2a2 1
    assert dp["d_aa"] == pytest.approx(3 / 4)
    # d_pa: a1 with p1 0, p2 1, p3 2/3 (I 1, U 3); a2 with every prediction 1
    assert dp["d_pa"] == pytest.approx((0 + 1 + 2 / 3 + 3) / 6)
    # d_pp: p1p2 1, p1p3 2/3, p2p3 1 (both orders), diagonal p1 0, p2 1, p3 0
    assert dp["d_pp"] == pytest.approx((2 * (1 + 2 / 3 + 1) + 1) / 9)
    assert dp["ged"] == pytest.approx(11 / 108)
    # Dice (2I + 1e-8) / (|a| + |b| + 1e-8): M[a, p] = [[1, 0, 1/2], [0, 1, 0]] (empty-empty 1)
    # dice_max = mean over predictions of the best annotation: (1 + 1 + 1/2) / 3
    assert dp["dice_max"] == pytest.approx(5 / 6)
    assert dp["dice_match"] == pytest.approx(1.0)
    assert dp["dice_rater_matched"] == pytest.approx([1.0, 1.0])
    # mean annotation [.5, .5, 0, 0]; mean probability [.567, .333, .133, .367]:
    # t = .1: 2/3; .3: 4/5; .5: annotation empty, prediction 1 pixel, ~0; .7, .9: both empty, 1
    assert dp["dice_soft"] == pytest.approx((2 / 3 + 0.8 + 0 + 1 + 1) / 5)

    paper = image_metrics(STRIP_ANN, STRIP_PROB, "paper")
    # The paper's text: two empty masks have IoU 1, so a2a2, a2p2 and p2p2 are at d = 0.
    assert (paper["d_aa"], paper["d_pa"], paper["d_pp"]) == pytest.approx((1 / 2, 11 / 18, 16 / 27))
    assert paper["ged"] == pytest.approx(7 / 54)
    assert paper["dice_max"] == pytest.approx(1.0)  # mean over annotations of the best prediction


def test_released_hungarian_cost_decides_a_tie():
    # Both pairings total 1.1; the released code minimises 1 - Dice and keeps the diagonal here,
    # maximising the Dice (the paper's optimum) takes the other one.
    tie = np.array([[0.9, 0.5], [0.6, 0.2]])
    assert matched_dice_from_matrix(tie, "dpersona") == pytest.approx([0.9, 0.2])
    assert matched_dice_from_matrix(tie, "paper") == pytest.approx([0.5, 0.6])
    assert dice_match_from_matrix(tie, "dpersona") == pytest.approx(dice_match_from_matrix(tie))


# Two images, raters a1 = 2 pixels and a2 = 4 pixels, personalised predictions for (a1, a2): the
# second image's predictions come in swapped order.
PAIRED_ANN = np.array([[[[1, 1, 0, 0]], [[1, 1, 1, 1]]]] * 2, bool)
PAIRED_PROB = np.array([[[[0.9, 0.9, 0, 0]], [[0.9, 0.9, 0.9, 0]]],
                        [[[0.9, 0.9, 0.9, 0]], [[0.9, 0.9, 0, 0]]]])


@pytest.mark.parametrize("convention", ["paper", "dpersona"])
def test_matched_rater_dice_averages_to_dice_match(convention):
    # Dice a1: 1 with a 2-pixel, 4/5 with a 3-pixel prediction; a2: 2/3 and 6/7.
    row = summarise(batch_metrics(PAIRED_ANN, None, PAIRED_PROB, convention, paired=True))
    assert row["dice_match"] == pytest.approx((1 + 6 / 7) / 2)
    assert row["dice_rater_matched"] == pytest.approx([1, 6 / 7])
    assert row["dice_rater"] == pytest.approx([(1 + 4 / 5) / 2, (6 / 7 + 2 / 3) / 2])  # fixed pairing
    reported = table_rater_dice(row, convention, paired=True)
    if convention == "dpersona":  # as released: D_mean equals D_match when all raters annotate
        assert np.mean(reported) == pytest.approx(row["dice_match"])
    else:
        assert reported == row["dice_rater"] and np.mean(reported) < row["dice_match"] - 0.09
    assert table_rater_dice(row, convention, paired=False) == row["dice_rater_matched"]


def test_relative_sizes_by_hand():
    # image 0: sizes 2, 4, 6 (mean 4) -> 0.5, 1.0, 1.5; image 1: rater 2 absent, sizes 3, 1 (mean 2)
    # -> 1.5, 0.5; image 2: nothing drawn, left out
    masks = np.zeros((3, 3, 4, 4), bool)
    masks[0, 0].flat[:2] = masks[0, 1].flat[:4] = masks[0, 2].flat[:6] = True
    masks[1, 0].flat[:3] = masks[1, 1].flat[:1] = True
    masks[1, 2].flat[:16] = True  # absent rater: ignored however much it holds
    present = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1]], bool)
    np.testing.assert_allclose(relative_sizes(masks, present), [1.0, 0.75, 1.5])
    # probabilities are binarised > 0.5, and without a mask every rater counts
    np.testing.assert_allclose(relative_sizes(masks[:1] * 0.9), [0.5, 1.0, 1.5])
