"""A new dataset format is one reader registered with the registry: ``load_dataset`` detects it,
caches it, and what it reads trains and evaluates through the library like any built-in format."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pytest

from proseg_pyro.checkpoint import load_checkpoint
from proseg_pyro.data import load_dataset
from proseg_pyro.data.cases import Case, cases_to_slices
from proseg_pyro.data.checks import check_finite, check_labels
from proseg_pyro.data.formats import FORMATS, Format, ReadOptions, detect, register, unregister
from proseg_pyro.data.slices import SliceSet
from proseg_pyro.data.splits import subject_splits
from proseg_pyro.data.synthetic import make_synthetic
from proseg_pyro.errors import DataError
from proseg_pyro.evaluate import evaluate
from proseg_pyro.train import fit

from ..conftest import tiny_config

RATERS = ["R1", "R2"]
CLASSES = ["background", "lesion"]
CASES = 10


def _is_npy_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*_image.npy"))


def _read_npy_folder(path: Path, options: ReadOptions) -> SliceSet:
    """``CASE_image.npy`` (H, W) float and ``CASE_<rater>.npy`` (H, W) labels, one slice per case."""
    names = sorted(file.name[:-len("_image.npy")] for file in path.glob("*_image.npy"))
    splits = subject_splits(names)

    def cases() -> Iterable[Case]:
        for name in names:
            image = np.load(path / f"{name}_image.npy", allow_pickle=False).astype(np.float32)
            check_finite(image, path / f"{name}_image.npy")
            labels = np.zeros((1, len(RATERS), *image.shape), np.uint8)
            mask = np.zeros(len(RATERS), bool)
            for slot, rater in enumerate(RATERS):
                file = path / f"{name}_{rater}.npy"
                if file.exists():
                    labels[0, slot], mask[slot] = check_labels(np.load(file, allow_pickle=False), CLASSES, file), True
            yield Case(name, name, splits[name], image[None, None], labels, mask)

    return cases_to_slices(cases(), RATERS, CLASSES, path.name, options.config, path, options.whole, options.store)


@pytest.fixture
def npy_format():
    """The ``npy`` format registered for one test, removed after it."""
    fmt = register(Format("npy", _is_npy_folder, _read_npy_folder, "a folder of CASE_image.npy files"))
    yield fmt
    unregister(fmt.name)


@pytest.fixture
def npy_folder(tmp_path) -> tuple[Path, SliceSet]:
    """``CASES`` slices of the built-in set written as a folder of ``.npy`` files (rater R2 skips
    case c0), and the slices written."""
    slices, _ = make_synthetic(num_images=CASES, image_size=16, seed=5)
    folder = tmp_path / "npyset"
    folder.mkdir()
    for index in range(CASES):
        np.save(folder / f"c{index}_image.npy", slices.images[index, 0])
        for slot, rater in enumerate(RATERS):
            if not (rater == "R2" and index == 0):
                np.save(folder / f"c{index}_{rater}.npy", slices.annotations[index, slot])
    return folder, slices


def test_a_registered_format_is_detected_read_and_cached(npy_format, npy_folder, tmp_path):
    folder, written = npy_folder
    assert detect(folder) is npy_format
    slices = load_dataset(folder, config=tiny_config(), cache_dir=tmp_path / "cache")
    assert slices.raters == RATERS and slices.classes == CLASSES and slices.images.shape == (CASES, 1, 16, 16)
    assert set(slices.splits) == {"train", "val", "test"}
    for index, case in enumerate(slices.case_ids):
        number = int(case[1:])
        expected = written.annotations[number, :2] * slices.mask[index, :, None, None]  # unannotated: zeros
        np.testing.assert_array_equal(slices.annotations[index], expected)
        image = written.images[number, 0]
        np.testing.assert_allclose(slices.images[index, 0], (image - image.mean()) / image.std(), atol=1e-4)
    assert slices.mask[slices.case_ids.index("c0")].tolist() == [True, False] and slices.mask.sum() == 2 * CASES - 1
    again = load_dataset(folder, config=tiny_config(), cache_dir=tmp_path / "cache")
    assert isinstance(again.images, np.memmap)  # the cache entry, keyed by the folder's files
    np.testing.assert_array_equal(again.annotations, slices.annotations)


def test_a_registered_format_trains_and_evaluates(npy_format, npy_folder, tmp_path):
    folder, _ = npy_folder
    config = tiny_config(num_raters=2, rater_names=RATERS, steps=1, val_every=1)
    slices = load_dataset(folder, config=config, cache=False)
    result = fit(config, slices.split("train"), slices.split("val"), tmp_path / "run", progress=False)
    assert len(result.history) == 1 and (tmp_path / "run" / "last.pt").is_file()
    model, guide, trained = load_checkpoint(tmp_path / "run" / "last.pt")
    assert trained.rater_names == RATERS
    evaluation = evaluate(model, guide, slices.split("test"), num_samples=2)
    assert evaluation.raters == RATERS and set(evaluation.rows) == {"personalised", "prior"}
    assert 0 <= evaluation.rows["personalised"]["dice_soft"] <= 1


def test_an_unregistered_format_is_unknown(npy_folder):
    folder, _ = npy_folder
    assert "npy" not in FORMATS
    with pytest.raises(DataError, match="unknown data source: expected .*a folder of NPC .h5 files"):
        load_dataset(folder, config=tiny_config(), cache=False)
