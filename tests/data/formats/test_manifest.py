"""Manifests: round trips (3D, oriented, multi-channel, RGB, missing raters), splits, paths kept
inside the dataset's folder, and bad input named."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import SliceSet, load_dataset
from proseg_pyro.errors import ConfigError, DataError

CONFIG16 = ProSegConfig(image_size=16)
SPACING = (0.8, 0.9, 3.0)
DIRECTION = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # 90 degrees about z
RNG = np.random.default_rng(0)
VOLUMES = {"t1": RNG.normal(size=(5, 12, 10)).astype(np.float32),
           "t2": RNG.normal(size=(5, 12, 10)).astype(np.float32),
           "A": (RNG.random((5, 12, 10)) < 0.3).astype(np.uint8),
           "B": (RNG.random((5, 12, 10)) < 0.5).astype(np.uint8)}


def write_image(path: Path, array: np.ndarray, spacing=SPACING, direction=DIRECTION, is_vector=False) -> None:
    image = sitk.GetImageFromArray(array, isVector=is_vector)
    if image.GetDimension() == 3:
        image.SetSpacing(spacing)
        image.SetDirection(direction)
        image.SetOrigin((-20.0, 15.5, 7.0))
    sitk.WriteImage(image, str(path))


def write_manifest(folder: Path, cases: list[dict], raters=("A", "B", "C"), **extra) -> Path:
    path = folder / "manifest.json"
    path.write_text(json.dumps({"name": "toy", "raters": list(raters), "classes": ["background", "lesion"],
                                "cases": cases, **extra}))
    return path


@pytest.fixture
def volume_manifest(tmp_path) -> Path:
    """One 3D case (5 slices, 12 x 10, non-unit spacing, rotated): channels t1, t2; raters A, B (C missing)."""
    for name, array in VOLUMES.items():
        write_image(tmp_path / f"{name}.nii.gz", array)
    return write_manifest(tmp_path, [{"id": "c1", "subject": "s1", "split": "train",
                                      "image": ["t1.nii.gz", "t2.nii.gz"],
                                      "annotations": {"A": "A.nii.gz", "B": "B.nii.gz"}}])


def test_volume_manifest_slices_channels_and_missing_rater(volume_manifest):
    slices = load_dataset(volume_manifest, config=CONFIG16)
    assert isinstance(slices, SliceSet) and len(slices) == 5
    assert slices.images.shape == (5, 2, 16, 16) and slices.images.dtype == np.float32
    assert slices.annotations.shape == (5, 3, 16, 16) and slices.annotations.dtype == np.uint8
    assert slices.mask.tolist() == [[True, True, False]] * 5
    assert not slices.annotations[:, 2].any()
    inner = (slice(2, 14), slice(3, 13))  # 12 x 10 centred in 16 x 16
    np.testing.assert_array_equal(slices.annotations[3, 0][inner], VOLUMES["A"][3])
    np.testing.assert_array_equal(slices.annotations[3, 1][inner], VOLUMES["B"][3])
    for channel, name in enumerate(("t1", "t2")):  # slice 3 of the right file, affinely rescaled
        got = slices.images[3, channel][inner].ravel()
        assert np.corrcoef(got, VOLUMES[name][3].ravel())[0, 1] > 0.999
        assert abs(np.corrcoef(got, VOLUMES[name][2].ravel())[0, 1]) < 0.5
        assert abs(slices.images[3, channel].mean()) < 1e-5 and abs(slices.images[3, channel].std() - 1) < 1e-4
    assert slices.subjects == ["s1"] * 5 and slices.splits == ["train"] * 5 and slices.name == "toy"


def test_resize_and_unit_intensity(volume_manifest):
    slices = load_dataset(volume_manifest, config=ProSegConfig(image_size=32, resize="resize", intensity="unit"),
                          cache=False)
    assert slices.images.shape == (5, 2, 32, 32)
    assert np.allclose(slices.images.min(axis=(2, 3)), 0) and np.allclose(slices.images.max(axis=(2, 3)), 1)
    assert set(np.unique(slices.annotations)) == {0, 1}


@pytest.mark.parametrize("rgb, channels", [("channels", 3), ("grey", 1)])
def test_2d_rgb_png_manifest(tmp_path, rgb, channels):
    colour = RNG.integers(0, 255, (16, 16, 3)).astype(np.uint8)
    write_image(tmp_path / "photo.png", colour, is_vector=True)
    write_image(tmp_path / "label.png", (colour[..., 0] > 128).astype(np.uint8))
    manifest = write_manifest(tmp_path, [{"id": "p", "image": "photo.png", "annotations": {"B": "label.png"}}], rgb=rgb)
    slices = load_dataset(manifest, config=CONFIG16, cache=False)
    assert slices.images.shape == (1, channels, 16, 16) and slices.mask.tolist() == [[False, True, False]]
    np.testing.assert_array_equal(slices.annotations[0, 1], colour[..., 0] > 128)


def test_splits_by_subject(tmp_path):
    write_image(tmp_path / "img.nii.gz", VOLUMES["t1"][:1])
    cases = [{"id": f"c{i}", "subject": f"s{i // 2}", "image": "img.nii.gz"} for i in range(40)]
    cases[0]["split"] = "test"
    slices = load_dataset(write_manifest(tmp_path, cases), config=CONFIG16)
    by_subject = {}
    for subject, split in zip(slices.subjects, slices.splits):
        assert by_subject.setdefault(subject, split) == split
    assert by_subject["s0"] == "test" and set(by_subject.values()) == {"train", "val", "test"}
    assert len(load_dataset(write_manifest(tmp_path, cases[::-1]), "val", CONFIG16)) == slices.splits.count("val")
    cases[1]["split"] = "train"
    with pytest.raises(DataError, match="manifest.json"):
        load_dataset(write_manifest(tmp_path, cases), config=CONFIG16)
    with pytest.raises(ConfigError):
        load_dataset(tmp_path / "manifest.json", split="training")


def test_manifest_paths_stay_in_the_dataset_folder(volume_manifest, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "A.nii.gz"
    write_image(outside, VOLUMES["A"])
    values = json.loads(volume_manifest.read_text())
    for name in ("/", str(outside), f"../{outside.parent.name}/A.nii.gz"):
        values["cases"][0]["annotations"] = {values["raters"][0]: name}
        volume_manifest.write_text(json.dumps(values))
        with pytest.raises(DataError, match="lies outside the dataset folder"):
            load_dataset(volume_manifest, config=CONFIG16, cache=False)
    (volume_manifest.parent / "link.nii.gz").symlink_to(outside)
    values["cases"][0]["annotations"] = {values["raters"][0]: "link.nii.gz"}
    volume_manifest.write_text(json.dumps(values))
    with pytest.raises(DataError, match="lies outside the dataset folder"):
        load_dataset(volume_manifest, config=CONFIG16, cache=False)
    values["cases"][0]["annotations"] = {values["raters"][0]: str(outside)}
    volume_manifest.write_text(json.dumps(values))
    slices = load_dataset(volume_manifest, config=CONFIG16, cache=False, allow_outside_paths=True)
    assert slices.mask[:, 0].any()


def _mismatched_grid(folder: Path) -> str:
    write_image(folder / "A.nii.gz", VOLUMES["A"], spacing=(0.8, 0.9, 2.0))
    return "A.nii.gz"


def _mismatched_size(folder: Path) -> str:
    write_image(folder / "B.nii.gz", VOLUMES["B"][:4])
    return "B.nii.gz"


def _mismatched_channel(folder: Path) -> str:
    write_image(folder / "t2.nii.gz", VOLUMES["t2"], direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    return "t2.nii.gz"


def _nan_image(folder: Path) -> str:
    """NaN in an MHA channel (ITK's NIfTI reader itself turns NaN and Inf into 0)."""
    bad = VOLUMES["t1"].copy()
    bad[2, 3, 4] = np.nan
    write_image(folder / "t1.mha", bad)
    _edit_manifest(lambda values: values["cases"][0].update(image=["t1.mha", "t2.nii.gz"]))(folder)
    return "t1.mha"


def _label_outside_classes(folder: Path) -> str:
    write_image(folder / "A.nii.gz", VOLUMES["A"] * 2)
    return "A.nii.gz"


def _missing_file(folder: Path) -> str:
    (folder / "B.nii.gz").unlink()
    return "B.nii.gz"


def _edit_manifest(change):
    def apply(folder: Path) -> str:
        path = folder / "manifest.json"
        values = json.loads(path.read_text())
        change(values)
        path.write_text(json.dumps(values))
        return "manifest.json"
    return apply


def _invalid_json(folder: Path) -> str:
    (folder / "manifest.json").write_text('{"raters": ["A"], "cases": [')
    return "manifest.json"


BAD_INPUTS = {
    "grid": _mismatched_grid, "size": _mismatched_size, "channel-grid": _mismatched_channel, "nan": _nan_image,
    "labels": _label_outside_classes, "missing-file": _missing_file, "invalid-json": _invalid_json,
    "unknown-rater": _edit_manifest(lambda v: v["cases"][0]["annotations"].update(Z="A.nii.gz")),
    "empty": _edit_manifest(lambda v: v.update(cases=[])),
    "missing-key": _edit_manifest(lambda v: v.pop("classes")),
    "bad-split": _edit_manifest(lambda v: v["cases"][0].update(split="holdout")),
}


@pytest.mark.parametrize("breaker", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_raises_data_error_naming_file(volume_manifest, breaker):
    name = breaker(volume_manifest.parent)
    with pytest.raises(DataError, match=name) as error:
        load_dataset(volume_manifest, config=CONFIG16)
    assert "\n" not in str(error.value)
