"""The built-in synthetic set: reproducible, raters with distinct styles, truth that re-draws them."""
from __future__ import annotations

import numpy as np
import pytest

from proseg_pyro.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(num_images=60, image_size=32, seed=0)


def test_same_seed_same_data(synthetic):
    slices, truth = synthetic
    again, again_truth = make_synthetic(num_images=60, image_size=32, seed=0)
    np.testing.assert_array_equal(again.images, slices.images)
    np.testing.assert_array_equal(again.annotations, slices.annotations)
    np.testing.assert_array_equal(again_truth.main, truth.main)
    assert again.splits == slices.splits
    other, _ = make_synthetic(num_images=60, image_size=32, seed=1)
    assert not np.array_equal(other.images, slices.images)


def test_styles_are_distinct(synthetic):
    slices, _ = synthetic
    area = dict(zip(slices.raters, slices.annotations.sum(axis=(2, 3)).T))  # rater -> (S,) pixel counts
    assert (area["tight"] <= area["generous"]).all() and area["tight"].mean() < 0.5 * area["generous"].mean()
    assert area["tight"].mean() < area["core"].mean() < area["generous"].mean()
    flat = slices.annotations.reshape(len(slices), len(slices.raters), -1)
    for a in range(len(slices.raters)):
        for b in range(a):
            assert (flat[:, a] != flat[:, b]).mean() > 0.005, (slices.raters[a], slices.raters[b])


def test_truth_draw_reproduces_annotation_statistics(synthetic):
    slices, truth = synthetic
    drawn = truth.draw(np.random.default_rng(123)).astype(bool)
    given = slices.annotations.astype(bool)
    assert drawn.shape == given.shape
    np.testing.assert_allclose(drawn.mean(axis=(0, 2, 3)), given.mean(axis=(0, 2, 3)), rtol=0.1)
    iou = lambda a, b: ((a & b).sum((-2, -1)) / np.maximum((a | b).sum((-2, -1)), 1)).mean()  # noqa: E731
    for slot, name in enumerate(slices.raters):
        if name != "ragged":  # smooth styles: a fresh draw matches the given annotation closely
            assert iou(drawn[:, slot], given[:, slot]) > 0.85, name
    subset = truth.draw(np.random.default_rng(0), raters=[1], index=np.arange(5))
    assert subset.shape == (5, 1, 32, 32)
