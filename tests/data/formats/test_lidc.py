"""LIDC-style pickles (or a zip holding one): rater ranking, folds by subject, and the restricted unpickler."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import load_dataset
from proseg_pyro.data.formats.lidc import NUM_FOLDS, lidc_splits, read_lidc_pickle
from proseg_pyro.data.pickles import read_pickle
from proseg_pyro.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
QUBIQ = SHARED_DATA / "qubiq-brain-growth" / "brain_growth_alpha.zip"


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
