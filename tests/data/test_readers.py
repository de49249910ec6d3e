"""Readers: SimpleITK images and DICOM series, LIDC-style pickles (restricted), NPC h5 folders."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk

from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import load_dataset
from proseg_pyro.data.readers import (NUM_FOLDS, lidc_splits, read_image, read_lidc_pickle, read_npc_case,
                                      read_npc_folder, read_pickle)
from proseg_pyro.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
QUBIQ = SHARED_DATA / "qubiq-brain-growth" / "brain_growth_alpha.zip"
CONFIG16 = ProSegConfig(image_size=16)


def test_read_image_keeps_voxel_order_and_geometry(tmp_path):
    volume = np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((10.0, -5.0, 3.0))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    sitk.WriteImage(image, str(tmp_path / "v.nii.gz"))
    array, geometry = read_image(tmp_path / "v.nii.gz")
    assert array.shape == (4, 1, 5, 6)
    np.testing.assert_array_equal(array[:, 0], volume)
    assert geometry.size == (6, 5, 4)
    assert np.allclose(geometry.spacing, (0.7, 0.8, 2.5))
    assert np.allclose(geometry.direction, (0, 1, 0, -1, 0, 0, 0, 0, 1))


def test_read_image_rgb_png_gives_components(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (7, 9, 3)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "c.png"))
    array, geometry = read_image(tmp_path / "c.png")
    assert array.shape == (1, 3, 7, 9) and geometry.size == (9, 7)
    np.testing.assert_array_equal(array[0], rgb.transpose(2, 0, 1))


def test_read_dicom_series_folder(tmp_path):
    volume = np.random.default_rng(2).integers(0, 1000, (3, 8, 9)).astype(np.int16)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.5, 0.6, 2.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(3):
        part = image[:, :, z]
        tags = {"0020|000e": "1.2.826.0.1.3680043.2.1125.1.1", "0020|000d": "1.2.826.0.1.3680043.2.1125.1.2",
                "0008|0060": "MR", "0020|0013": str(z), "0020|0037": "1\\0\\0\\0\\1\\0",
                "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, z))))}
        for tag, value in tags.items():
            part.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"{z}.dcm"))
        writer.Execute(part)
    array, geometry = read_image(tmp_path)
    np.testing.assert_array_equal(array[:, 0], volume)
    assert np.allclose(geometry.spacing, (0.5, 0.6, 2.0))


@pytest.mark.parametrize("name, content", [("missing.nii.gz", None), ("broken.nii.gz", b"not an image"),
                                           ("empty_folder", "dir")])
def test_read_image_bad_input_names_file(tmp_path, name, content):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=name):
        read_image(path)


# --- LIDC-style pickles ----------------------------------------------------------------------------
AREAS = {"img0": [30, 5, 12], "img1": [2, 40, 2], "img2": [0, 9, 4]}  # foreground pixels per mask slot
UIDS = {"img0": "subjA_1", "img1": "subjA_2", "img2": "subjB"}


def _lidc_records() -> dict:
    records = {}
    for key, areas in AREAS.items():
        masks = []
        for area in areas:
            mask = np.zeros((8, 8), dtype=np.float32)
            mask.flat[:area] = 0.9
            mask.flat[area:area + 3] = 0.4  # below the 0.5 threshold
            masks.append(mask)
        records[key] = {"image": np.full((8, 8), 200, np.uint8), "masks": masks, "series_uid": UIDS[key]}
    return records


@pytest.fixture
def lidc_pickle(tmp_path) -> Path:
    path = tmp_path / "lidc.pkl"
    path.write_bytes(pickle.dumps(_lidc_records()))
    return path


def _zip(path: Path, *members: Path) -> Path:
    archive = path.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w") as handle:
        for member in members:
            handle.write(member, member.name)
    return archive


@pytest.mark.parametrize("zipped", [False, True])
def test_lidc_ranks_raters_by_area(lidc_pickle, zipped):
    source = _zip(lidc_pickle, lidc_pickle) if zipped else lidc_pickle
    slices = read_lidc_pickle(source, rank_raters="area", config=ProSegConfig(image_size=8))
    assert slices.raters == ["rank1", "rank2", "rank3"] and slices.mask.all()
    assert set(np.unique(slices.annotations)) <= {0, 1}
    for index, key in enumerate(slices.case_ids):
        assert slices.annotations[index].sum(axis=(1, 2)).tolist() == sorted(AREAS[key])
    assert sorted(slices.subjects) == ["subjA", "subjA", "subjB"]
    assert slices.splits == sorted(slices.splits, key=["train", "val", "test"].index)  # grouped by split


def test_lidc_keep_mode_keeps_slots(lidc_pickle):
    slices = read_lidc_pickle(lidc_pickle, rank_raters="keep", config=ProSegConfig(image_size=8))
    assert slices.raters == ["rater1", "rater2", "rater3"]
    for index, key in enumerate(slices.case_ids):
        assert slices.annotations[index].sum(axis=(1, 2)).tolist() == AREAS[key]


def test_lidc_folds_split_by_subject():
    subjects = [f"s{i:02d}" for i in range(10)]
    folds = [lidc_splits(subjects, fold) for fold in range(NUM_FOLDS)]
    for subject in subjects:  # test exactly once, val exactly once over the 4 folds
        assert [f[subject] for f in folds].count("test") == 1
        assert [f[subject] for f in folds].count("val") == 1
    assert folds[0] == lidc_splits(reversed(subjects), 0)


def test_lidc_bad_options(lidc_pickle):
    with pytest.raises(ConfigError):
        read_lidc_pickle(lidc_pickle, rank_raters="size")
    with pytest.raises(ConfigError):
        read_lidc_pickle(lidc_pickle, fold=4)


class _Exploit:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("zipped", [False, True])
def test_malicious_pickle_never_runs(tmp_path, zipped):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"case": {"image": np.zeros((4, 4)), "masks": [_Exploit(marker)]}}))
    source = _zip(path, path) if zipped else path
    with pytest.raises(DataError, match=source.name):
        read_lidc_pickle(source)
    assert not marker.exists()


def test_pickle_bad_structure_and_zip(tmp_path, lidc_pickle):
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="wrong.pkl"):
        read_lidc_pickle(wrong)
    two = _zip(tmp_path / "two", lidc_pickle, wrong)
    with pytest.raises(DataError, match="two.zip"):
        read_pickle(two)
    (tmp_path / "bad.zip").write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.zip"):
        read_pickle(tmp_path / "bad.zip")


@pytest.mark.skipif(not QUBIQ.is_file(), reason=f"real QUBIQ data absent ({QUBIQ}): shared/data is not beside the repo")
def test_qubiq_brain_growth_loads_with_kept_raters():
    slices = load_dataset(QUBIQ, rank_raters="keep", config=ProSegConfig(image_size=128), cache=False)
    assert slices.images.shape == (39, 1, 128, 128) and slices.annotations.shape == (39, 7, 128, 128)
    assert len(slices.raters) == 7 and slices.mask.all()
    assert set(np.unique(slices.annotations)) == {0, 1}
    areas = slices.annotations.sum(axis=(0, 2, 3))
    assert areas.argmax() == 6 and set(areas.argsort()[:2]) == {2, 3}  # README: rater 7 largest, 3-4 smallest
    assert {split for split in slices.splits} == {"train", "val", "test"}


# --- NPC h5 ---------------------------------------------------------------------------------------
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
