"""Datasets through the one preprocessing: whole slices for evaluation (nothing dropped), and
resampling to the training spacing."""
from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from proseg_pyro.data import load_dataset
from proseg_pyro.data.preprocess import Preprocess

from ..conftest import tiny_config


def _write(array: np.ndarray, path, spacing=(1.0, 1.0, 2.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def _manifest(folder, shapes, spacing=(1.0, 1.0, 2.0), lesion=5):
    """One case per (Z, H, W) shape: random images, a ``lesion``-pixel square in the bottom-right corner."""
    rng = np.random.default_rng(0)
    cases, lesions = [], []
    for number, shape in enumerate(shapes):
        labels = np.zeros(shape, np.uint8)
        labels[:, -lesion - 2:-2, -lesion - 2:-2] = 1  # far from the centre of a large slice
        _write(rng.normal(size=shape).astype(np.float32), folder / f"c{number}.nii.gz", spacing)
        _write(labels, folder / f"c{number}_A.nii.gz", spacing)
        cases.append({"id": f"c{number}", "split": "test", "image": f"c{number}.nii.gz",
                      "annotations": {"A": f"c{number}_A.nii.gz"}})
        lesions.append(labels)
    (folder / "manifest.json").write_text(json.dumps({"raters": ["A"], "classes": ["background", "lesion"],
                                                      "cases": cases}))
    return folder / "manifest.json", lesions


def test_whole_slices_keep_every_annotated_pixel_of_cases_of_any_size(tmp_path):
    """Cases of 40x12 and 9x30 pixels (a 16-pixel model, depth 2): training's form crops the
    corner lesions away; the whole form pads each case to a multiple of 4 (and at least 16), then
    all to the largest, and keeps every lesion pixel where it was."""
    manifest, lesions = _manifest(tmp_path, [(2, 40, 12), (3, 9, 30)])
    config = tiny_config()
    cropped = load_dataset(manifest, config=config, cache=False)
    assert cropped.images.shape[-2:] == (16, 16) and cropped.annotations.sum() < sum(map(np.sum, lesions)) / 2
    whole = load_dataset(manifest, config=config, cache=False, whole=True)
    assert whole.images.shape == (5, 1, 40, 32) and whole.annotations.shape == (5, 1, 40, 32)
    assert whole.annotations.sum() == sum(map(np.sum, lesions))
    first = whole.annotations[:2, 0, :40, 2:14]  # 12 columns centred in 16
    np.testing.assert_array_equal(first, lesions[0])
    second = whole.annotations[2:, 0, 3:12, 1:31]  # 9 rows centred in 16, 30 columns in 32
    np.testing.assert_array_equal(second, lesions[1])
    padding = whole.images[2:, 0, 16:]  # rows added to reach the largest case: the slice's minimum
    np.testing.assert_array_equal(padding, np.broadcast_to(whole.images[2:, 0].min(axis=(-2, -1))[:, None, None],
                                                           padding.shape))


def test_cases_are_resampled_to_the_training_spacing(tmp_path):
    """A case at 0.5 mm read for a model of 1 mm: half the pixels per axis, the lesion's area in mm^2 kept."""
    manifest, lesions = _manifest(tmp_path, [(2, 32, 32)], spacing=(0.5, 0.5, 2.0), lesion=8)
    whole = load_dataset(manifest, config=tiny_config(spacing=[1.0, 1.0]), cache=False, whole=True)
    assert whole.images.shape == (2, 1, 16, 16)
    assert whole.annotations.sum() * 1.0 == lesions[0].sum() * 0.25 == 2 * 16  # mm^2: 4x4 pixels of 1 mm
    native = load_dataset(manifest, config=tiny_config(), cache=False, whole=True)
    assert native.images.shape == (2, 1, 32, 32)


def test_the_patch_form_centre_crops_then_normalises_and_cannot_be_undone():
    """``forward(whole=False)``: a 20x18 slice (no geometry) becomes the centre 16x16 (rows 2..17,
    columns 1..16), normalised after the crop; its labels cropped alike; no region to map back."""
    rng = np.random.default_rng(1)
    images = rng.normal(3.0, 2.0, (2, 1, 20, 18)).astype(np.float32)
    labels = (rng.random((2, 3, 20, 18)) < 0.3).astype(np.uint8)
    prepared = Preprocess.of(tiny_config()).forward(images, None, labels, whole=False)
    crop = images[:, :, 2:18, 1:17]
    expected = (crop - crop.mean(axis=(-2, -1), keepdims=True)) / crop.std(axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(prepared.images, expected, atol=1e-5)
    np.testing.assert_array_equal(prepared.labels, labels[:, :, 2:18, 1:17])
    assert prepared.region is None and prepared.model is None and prepared.notes == []
