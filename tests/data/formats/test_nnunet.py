"""nnU-Net v2 / Decathlon folders: raters as sibling label folders, one rater, training spacing,
a short training and evaluation, and the layouts that are refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from proseg_pyro.checkpoint import load_checkpoint
from proseg_pyro.cli.main import cli
from proseg_pyro.data import load_dataset
from proseg_pyro.data.dataset import dataset_spacing
from proseg_pyro.data.formats import detect
from proseg_pyro.data.formats.nnunet import channel_cases
from proseg_pyro.data.synthetic import make_synthetic
from proseg_pyro.errors import DataError
from proseg_pyro.evaluate import evaluate
from proseg_pyro.train import fit

from ...conftest import tiny_config

CASES = 8
SPACINGS = [(0.5, 0.6), (0.7, 0.8), (0.9, 1.0)]  # per case, in turn


def _write(array: np.ndarray, path: Path, spacing: tuple[float, float]) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((*spacing, 2.0))
    image.SetOrigin((1.0, -2.0, 3.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def write_nnunet(folder: Path, raters=("A", "B"), decathlon: bool = False) -> Path:
    """``CASES`` cases of 3 slices of the built-in set (16x16) with two channels; rater ``B`` (when
    given) skips case 0. Label folders ``labelsTr_<rater>/``, or ``labelsTr/`` for ``raters=(None,)``."""
    slices, _ = make_synthetic(num_images=3 * CASES, image_size=16, seed=1)
    spec = ({"modality": {"0": "T2", "1": "ADC"}, "labels": {"0": "background", "1": "lesion"}} if decathlon else
            {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "lesion": 1},
             "file_ending": ".nii.gz"})
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"name": "toy", "numTraining": CASES, **spec}))
    for case in range(CASES):
        index, spacing = slice(3 * case, 3 * case + 3), SPACINGS[case % len(SPACINGS)]
        name = f"toy_{case:03d}"
        for channel in range(2):
            _write(slices.images[index, 0] * (1 + channel), folder / "imagesTr" / f"{name}_{channel:04d}.nii.gz",
                   spacing)
        for slot, rater in enumerate(raters):
            if rater == "B" and case == 0:
                continue
            labels = "labelsTr" if rater is None else f"labelsTr_{rater}"
            _write(slices.annotations[index, slot].astype(np.uint8), folder / labels / f"{name}.nii.gz", spacing)
    return folder


def test_two_rater_folders_load_with_their_raters_and_missing_annotations(tmp_path):
    folder = write_nnunet(tmp_path / "Dataset001_Toy")
    assert detect(folder).name == "nnunet"
    config = tiny_config()
    slices = load_dataset(folder, config=config, cache=False)
    assert slices.raters == ["A", "B"] and slices.classes == ["background", "lesion"]
    assert slices.images.shape == (3 * CASES, 2, 16, 16) and len(set(slices.case_ids)) == CASES
    first = [index for index, case in enumerate(slices.case_ids) if case == "toy_000"]
    assert slices.mask[first].tolist() == [[True, False]] * 3 and slices.mask.sum() == 3 * CASES + 3 * (CASES - 1)
    assert set(slices.splits) == {"train", "val", "test"}
    train_cases = {case for case, split in zip(slices.case_ids, slices.splits) if split == "train"}
    expected = np.median([SPACINGS[int(case[-3:]) % len(SPACINGS)] for case in train_cases], axis=0)
    assert dataset_spacing(folder) == pytest.approx(tuple(expected), abs=1e-6)


def test_a_decathlon_folder_with_one_label_folder_is_one_rater(tmp_path):
    folder = write_nnunet(tmp_path / "Task01", raters=(None,), decathlon=True)
    slices = load_dataset(folder, config=tiny_config(), cache=False)
    assert slices.raters == ["rater"] and slices.mask.all() and slices.images.shape[1] == 2


def test_a_two_rater_folder_trains_and_evaluates(tmp_path):
    folder = write_nnunet(tmp_path / "Dataset001_Toy")
    config = tiny_config(num_raters=2, rater_names=["A", "B"], in_channels=2, steps=4, val_every=2,
                         spacing=list(dataset_spacing(folder)))
    slices = load_dataset(folder, config=config, cache=False)
    fit(config, slices.split("train"), slices.split("val"), tmp_path / "run", progress=False)
    model, guide, trained = load_checkpoint(tmp_path / "run" / "last.pt")
    assert trained.spacing == pytest.approx(config.spacing) and trained.rater_names == ["A", "B"]
    result = evaluate(model, guide, slices.split("test"), num_samples=4)
    assert set(result.rows) == {"personalised", "prior"} and result.raters == ["A", "B"]
    assert 0 <= result.rows["personalised"]["ged"] and 0 <= result.rows["personalised"]["dice_soft"] <= 1


def test_train_records_the_median_spacing_of_the_training_cases(tmp_path):
    folder = write_nnunet(tmp_path / "Dataset001_Toy")
    (tmp_path / "tiny.json").write_text(json.dumps(tiny_config(steps=2, val_every=2).to_dict()))
    result = CliRunner().invoke(cli, ["train", "--data", str(folder), "--config", str(tmp_path / "tiny.json"),
                                      "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["spacing"]
    assert recorded == pytest.approx(list(dataset_spacing(folder)))
    assert f"in-plane spacing {tuple(recorded)} mm" in result.output


@pytest.mark.parametrize("problem, message", [
    ("missing channel", "case 'toy_001' misses channel 0001"),
    ("both label layouts", "labelsTr: found beside labelsTr_<rater>/"),
    ("region labels", "region labels are not supported"),
    ("no scans", "folder holds no readable scans"),
])
def test_bad_folders_are_refused_naming_the_problem(tmp_path, problem, message):
    folder = write_nnunet(tmp_path / "Dataset001_Toy")
    if problem == "missing channel":
        (folder / "imagesTr" / "toy_001_0001.nii.gz").unlink()
    elif problem == "both label layouts":
        (folder / "labelsTr").mkdir()
    elif problem == "region labels":
        spec = json.loads((folder / "dataset.json").read_text())
        (folder / "dataset.json").write_text(json.dumps({**spec, "labels": {"background": 0, "whole": [1, 2]}}))
    else:
        for path in (folder / "imagesTr").iterdir():
            path.unlink()
    with pytest.raises(DataError, match=message):
        load_dataset(folder, config=tiny_config(), cache=False)


def test_scan_folders_group_by_case_or_take_one_plain_file_per_case(tmp_path):
    for name in ("b_0000.nii.gz", "b_0001.nii.gz", "a_0001.nii.gz", "a_0000.nii.gz"):
        (tmp_path / "numbered").mkdir(exist_ok=True)
        (tmp_path / "numbered" / name).write_bytes(b"")
    cases = channel_cases(tmp_path / "numbered")
    assert list(cases) == ["a", "b"] and [path.name for path in cases["a"]] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    (tmp_path / "plain").mkdir()
    for name in ("p1.nii.gz", "p2.mha", "notes.txt"):
        (tmp_path / "plain" / name).write_bytes(b"")
    assert {case: [p.name for p in paths] for case, paths in channel_cases(tmp_path / "plain").items()} == {
        "p1": ["p1.nii.gz"], "p2": ["p2.mha"]}
    (tmp_path / "numbered" / "c_0000.nii.gz").write_bytes(b"")
    with pytest.raises(DataError, match="different channel counts"):
        channel_cases(tmp_path / "numbered")
    with pytest.raises(DataError, match="misses channel"):
        channel_cases(tmp_path / "plain", channels=2)
