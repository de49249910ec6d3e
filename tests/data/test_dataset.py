"""``load_dataset``: unknown sources named, the synthetic source, and export back to files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import SliceSet, load_dataset
from proseg_pyro.data.export import write_manifest_dataset
from proseg_pyro.errors import DataError

from .formats.test_manifest import CONFIG16, volume_manifest  # noqa: F401  (a fixture)


@pytest.mark.parametrize("name", ["absent.json", "data.csv"])
def test_bad_source(tmp_path, name):
    if name.endswith(".csv"):
        (tmp_path / name).write_text("x")
    with pytest.raises(DataError, match=name):
        load_dataset(tmp_path / name)


def _assert_same(got: SliceSet, want: SliceSet) -> None:
    np.testing.assert_allclose(got.images, want.images, atol=1e-5)
    np.testing.assert_array_equal(got.annotations, want.annotations)
    np.testing.assert_array_equal(got.mask, want.mask)
    assert (got.raters, got.classes, got.subjects, got.case_ids, got.splits) == \
           (want.raters, want.classes, want.subjects, want.case_ids, want.splits)


def test_export_round_trip(volume_manifest, tmp_path):
    original = load_dataset(volume_manifest, config=CONFIG16)
    manifest = write_manifest_dataset(original, tmp_path / "out")
    _assert_same(load_dataset(manifest, config=CONFIG16), original)
    image = sitk.ReadImage(str(tmp_path / "out" / json.loads(manifest.read_text())["cases"][0]["image"][0]))
    assert image.GetSize() == (16, 16, 5) and image.GetSpacing() == (1.0, 1.0, 1.0)


def test_synthetic_source_and_export(tmp_path):
    config = ProSegConfig(image_size=32)
    slices = load_dataset("synthetic", config=config, num_images=6, seed=1)
    assert slices.images.shape == (6, 1, 32, 32) and slices.annotations.shape == (6, 4, 32, 32)
    assert np.allclose(slices.images.mean(axis=(2, 3)), 0, atol=1e-5)
    assert len(load_dataset("synthetic", "train", config, num_images=6, seed=1)) == slices.splits.count("train")
    reloaded = load_dataset(write_manifest_dataset(slices, tmp_path), config=config)
    assert reloaded.splits == sorted(slices.splits, key=["train", "val", "test"].index)  # grouped by split
    for split in ("train", "val", "test"):  # each split's slices in their order
        _assert_same(reloaded.split(split), slices.split(split))
