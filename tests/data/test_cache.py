"""The slice cache: hits without reading an image, a new entry for other content or config, stale
entries removed, and a symlinked cache folder refused."""
from __future__ import annotations

import os

import numpy as np
import pytest

import proseg_pyro.data.images as images_module
from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import load_dataset
from proseg_pyro.errors import DataError

from .formats.test_manifest import CONFIG16, VOLUMES, volume_manifest, write_image  # noqa: F401  (a fixture)


def test_cache_hit_and_invalidation(volume_manifest, monkeypatch, tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("cache")
    label = volume_manifest.parent / "A.nii"  # uncompressed: an edit keeps its size
    write_image(label, VOLUMES["A"])
    volume_manifest.write_text(volume_manifest.read_text().replace('"A.nii.gz"', '"A.nii"'))
    first = load_dataset(volume_manifest, config=CONFIG16, cache_dir=cache_dir)
    (entry,) = cache_dir.iterdir()  # one store: .npy arrays, mapped rather than read into memory
    assert sorted(path.name for path in entry.iterdir()) == ["annotations.npy", "images.npy", "mask.npy", "meta.json",
                                                             "regions.npy"]
    assert isinstance(first.images, np.memmap) and isinstance(first.annotations, np.memmap)
    assert first.annotations.dtype == np.uint8
    train_split = first.split("train")  # slices are grouped by split: a split is a view of the map
    assert np.shares_memory(train_split.images, first.images) and isinstance(train_split.annotations, np.memmap)
    assert not (volume_manifest.parent / ".cache").exists()  # nothing is written into the dataset

    def fail(*_):
        raise AssertionError("read an image despite the cache")

    with monkeypatch.context() as patch:
        patch.setattr(images_module, "read_image", fail)
        cached = load_dataset(volume_manifest, config=CONFIG16, cache_dir=cache_dir)
        np.testing.assert_array_equal(cached.images, first.images)
        np.testing.assert_array_equal(cached.annotations, first.annotations)
        assert (cached.raters, cached.subjects, cached.splits) == (first.raters, first.subjects, first.splits)
        with pytest.raises(AssertionError):  # another preprocessing config is another cache entry
            load_dataset(volume_manifest, config=ProSegConfig(image_size=32), cache_dir=cache_dir)
        with pytest.raises(AssertionError):  # no cache: read afresh
            load_dataset(volume_manifest, config=CONFIG16, cache=False, cache_dir=cache_dir)
    stamp, size = label.stat(), label.stat().st_size
    write_image(label, 1 - VOLUMES["A"])  # same size and time stamp, other content
    assert label.stat().st_size == size
    os.utime(label, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    changed = load_dataset(volume_manifest, config=CONFIG16, cache_dir=cache_dir)
    np.testing.assert_array_equal(changed.annotations[3, 0, 2:14, 3:13], 1 - VOLUMES["A"][3])
    assert len(list(cache_dir.iterdir())) == 1  # stale entries removed


def test_a_symlinked_cache_folder_is_refused(volume_manifest, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "precious.npz").write_text("keep")
    link = tmp_path_factory.mktemp("cache") / "link"
    link.symlink_to(elsewhere)
    with pytest.raises(DataError, match="the cache folder is a symlink"):
        load_dataset(volume_manifest, config=CONFIG16, cache_dir=link)
    assert [path.name for path in elsewhere.iterdir()] == ["precious.npz"]
