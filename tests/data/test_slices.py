"""Where each slice's image lies: regions recorded by the store through padding, and selected with the slices."""
from __future__ import annotations

import numpy as np

from proseg_pyro.config import ProSegConfig
from proseg_pyro.data.cases import Case, cases_to_slices
from proseg_pyro.data.preprocess import Preprocess
from proseg_pyro.data.slices import inside_regions


def test_inside_regions_marks_each_slices_rectangle():
    inside = inside_regions(np.array([[1, 0, 2, 3], [0, 2, 4, 1]]), (4, 4))
    assert inside[0].astype(int).tolist() == [[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    assert inside[1].astype(int).tolist() == [[0, 0, 1, 0]] * 4


def _case(case_id: str, height: int, width: int, split: str) -> Case:
    images = np.arange(2 * height * width, dtype=np.float32).reshape(2, 1, height, width)
    return Case(case_id, case_id, split, images, np.zeros((2, 1, height, width), np.uint8), np.ones(1, bool))


def test_the_store_records_where_each_case_lies_after_both_paddings():
    """A 12x12 and a 20x18 case with image_size 16 and depth 2: the small one is padded centred to 16x16
    (2 on each side), the large one to 20x20 (1 left, 1 right); both then to 20x20 at the bottom-right."""
    config = ProSegConfig(image_size=16, depth=2, num_raters=1)
    slices = cases_to_slices([_case("small", 12, 12, "train"), _case("large", 20, 18, "test")], ["a"],
                             ["background", "lesion"], "toy", config, "toy", whole=True)
    assert slices.images.shape[-2:] == (20, 20)
    assert slices.regions.tolist() == [[2, 2, 12, 12]] * 2 + [[0, 1, 20, 18]] * 2
    # the image's pixels are where the region says: the small case's first pixel (value 0) at (2, 2)
    small = slices.images[0, 0]
    inside = slices.inside()[0]
    assert inside.sum() == 144 and small[2, 2] == small[inside].min()
    assert slices.split("test").regions.tolist() == [[0, 1, 20, 18]] * 2


def test_a_training_crop_records_the_centre_pad_of_a_small_slice():
    preprocess = Preprocess.of(ProSegConfig(image_size=16, depth=2))
    small = preprocess.forward(np.zeros((1, 1, 10, 30), np.float32), None, np.zeros((1, 1, 10, 30), np.uint8),
                               whole=False)
    assert small.images.shape[-2:] == (16, 16) and small.inside == (3, 0, 10, 16) and small.region is None
