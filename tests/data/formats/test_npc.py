"""NPC-style folders of .h5 cases: channels, raters, splits by folder or subject, bad files named."""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import load_dataset
from proseg_pyro.data.formats.npc import read_npc_case, read_npc_folder
from proseg_pyro.errors import DataError

CONFIG16 = ProSegConfig(image_size=16)


def _write_npc(path: Path, shape: tuple[int, ...], raters: tuple[int, ...] = (1, 2, 3, 4), seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {key: rng.normal(loc=i * 10, size=shape).astype(np.float32) for i, key in enumerate(("t1", "t1c", "t2"))}
    arrays |= {f"label_a{r}": (rng.random(shape) < 0.2 * r).astype(np.uint8) for r in raters}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle[key] = value
    return arrays


def test_npc_case_3d_and_2d(tmp_path):
    arrays = _write_npc(tmp_path / "P001.h5", (3, 16, 16))
    images, labels, mask = read_npc_case(tmp_path / "P001.h5")
    assert images.shape == (3, 3, 16, 16) and labels.shape == (3, 4, 16, 16) and mask.all()
    np.testing.assert_array_equal(images[1, 2], arrays["t2"][1])
    np.testing.assert_array_equal(labels[2, 3], arrays["label_a4"][2])
    _write_npc(tmp_path / "P002_slice_4.h5", (16, 16), raters=(1, 2, 4))
    images, labels, mask = read_npc_case(tmp_path / "P002_slice_4.h5")
    assert images.shape == (1, 3, 16, 16) and mask.tolist() == [True, True, False, True]


def test_npc_folder_channels_raters_and_splits(tmp_path):
    arrays = _write_npc(tmp_path / "testing" / "P001.h5", (3, 16, 16))
    _write_npc(tmp_path / "training_2d" / "P002_slice_1.h5", (16, 16), raters=(1, 3), seed=1)
    _write_npc(tmp_path / "P003.h5", (16, 16), seed=2)
    slices = load_dataset(tmp_path, config=CONFIG16)
    assert slices.images.shape == (5, 3, 16, 16) and slices.raters == ["A1", "A2", "A3", "A4"]
    # grouped by split (P003 is assigned to train), files in order within each
    assert slices.case_ids == ["P003", "training_2d/P002_slice_1", "testing/P001", "testing/P001", "testing/P001"]
    assert slices.splits == ["train"] * 2 + ["test"] * 3
    assert slices.subjects[1] == "P002" and slices.mask[1].tolist() == [True, False, True, False]
    np.testing.assert_array_equal(slices.annotations[3], np.stack([arrays[f"label_a{r}"][1] for r in range(1, 5)]))
    t2 = arrays["t2"][1]
    np.testing.assert_allclose(slices.images[3, 2], (t2 - t2.mean()) / t2.std(), atol=1e-4)


def test_npc_bad_input(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle["t1"] = np.zeros((4, 4))
    with pytest.raises(DataError, match="x.h5"):
        read_npc_folder(tmp_path)
    (tmp_path / "x.h5").write_bytes(b"junk")
    with pytest.raises(DataError, match="x.h5"):
        read_npc_case(tmp_path / "x.h5")
    os.remove(tmp_path / "x.h5")
    with pytest.raises(DataError, match=tmp_path.name):
        read_npc_folder(tmp_path)
