"""The crowdsourcing references on masks whose consensus is known."""
from __future__ import annotations

import numpy as np

from proseg_pyro.baselines.crowd import majority_vote, staple


def _masks(*rows: str) -> np.ndarray:
    """One 1-row mask per string: '1' foreground -> (R, 1, W)."""
    return np.array([[[int(c) for c in row]] for row in rows])


def test_majority_vote_counts_present_raters_and_ties_are_background():
    annotations = _masks("1100", "1010", "1001", "1111")[None]  # (N=1, R=4, 1, 4)
    everyone = np.ones((1, 4), dtype=bool)
    assert majority_vote(annotations, everyone).tolist() == [[[1, 0, 0, 0]]]  # 2 of 4 is a tie
    without_last = np.array([[True, True, True, False]])
    assert majority_vote(annotations, without_last).tolist() == [[[1, 0, 0, 0]]]
    two = np.array([[True, False, False, True]])
    assert majority_vote(annotations, two).tolist() == [[[1, 1, 0, 0]]]


def test_staple_recovers_the_mask_when_raters_agree_up_to_an_outlier():
    truth = np.zeros((8, 8), dtype=np.int64)
    truth[2:6, 2:6] = 1
    outlier = truth.copy()
    outlier[0, 0] = 1
    annotations = np.stack([truth, truth, outlier])[None]
    fused = staple(annotations, np.ones((1, 3), dtype=bool))
    np.testing.assert_array_equal(fused[0], truth)


def test_staple_ignores_missing_raters_and_empty_images():
    truth = np.zeros((8, 8), dtype=np.int64)
    truth[1:4, 1:7] = 1
    wrong = 1 - truth
    annotations = np.stack([np.stack([truth, truth, wrong]), np.zeros((3, 8, 8), dtype=np.int64)])
    mask = np.array([[True, True, False], [True, True, True]])
    fused = staple(annotations, mask)
    np.testing.assert_array_equal(fused[0], truth)
    assert not fused[1].any()
