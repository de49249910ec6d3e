"""Scans in, scans out: the training preprocessing, the way back to the scan's grid, its geometry."""
from __future__ import annotations

import numpy as np
import pyro
import pytest
import SimpleITK as sitk
import torch

from proseg_pyro.data.readers import Geometry, read_image
from proseg_pyro.data.transforms import fit_to_size
from proseg_pyro.errors import DataError
from proseg_pyro.volume import (model_slices, read_annotation, read_scan, segment_scan, style_files, to_scan_grid,
                                write_style)

from .holdout import IMAGE_SIZE, SPACING, holdout_fixture, tiny_holdout_config, write_scan  # noqa: F401  (fixture)


@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_the_way_back_undoes_the_fit_to_the_model_grid(mode):
    """A map sent through the training fit (crop one axis, pad the other, or resize) and back returns
    where the crop kept it (background where it cut), or close to it after resizing."""
    config = tiny_holdout_config(resize=mode)
    height, width = 23, 11  # cropped to 16 rows, padded to 16 columns
    rows, columns = np.mgrid[0:height, 0:width] / 8.0
    foreground = (0.5 + 0.4 * np.sin(rows + np.arange(3)[:, None, None]) * np.cos(columns)).astype(np.float32)
    classes = np.stack([1 - foreground, foreground], 1)  # (Z, K, H, W)
    fitted, _ = fit_to_size(classes, np.zeros((3, 0, height, width)), IMAGE_SIZE, mode)
    back = to_scan_grid(torch.as_tensor(fitted), height, width, config).numpy()
    assert back.shape == (3, 2, height, width)
    if mode == "crop":
        kept = slice(3, 19)  # rows (23 - 16) // 2 .. + 16
        np.testing.assert_array_equal(back[:, :, kept], classes[:, :, kept])
        assert (back[:, 0, :kept.start] == 1).all() and (back[:, 1, kept.stop:] == 0).all()
    else:
        np.testing.assert_allclose(back, classes, atol=0.05)


def test_scan_slices_are_preprocessed_as_training_preprocesses_them(holdout, tmp_path):
    """Slices of a scan reach the model exactly as the manifest reader gives them to training."""
    config = holdout.load()[2]
    volume = holdout.slices.images[:5, 0] * 40 + 300  # another intensity scale: z-scored per slice again
    write_scan(volume, tmp_path / "scan.nii.gz")
    scan = read_scan([tmp_path / "scan.nii.gz"], config.in_channels)
    np.testing.assert_allclose(model_slices(scan, config).images, holdout.slices.images[:5], atol=1e-4)


def test_outputs_have_the_scans_geometry_and_line_up_with_its_slices(holdout, tmp_path):
    """A rotated, anisotropic NIfTI goes in; every volume that comes out has its exact grid, the
    masks sit on the lesions of the same slices, and the part the crop cut off stays empty."""
    model, guide, config = holdout.load()
    test = holdout.known.split("test")
    depth, top, left = len(test), 3, 2  # the 16x16 slices inside a 22x20 grid, cropped back to them
    canvas = np.full((depth, 22, 20), test.images.min(), np.float32)
    canvas[:, top:top + IMAGE_SIZE, left:left + IMAGE_SIZE] = test.images[:, 0]
    reference = write_scan(canvas, tmp_path / "scan.nii.gz")
    scan = read_scan([tmp_path / "scan.nii.gz"], config.in_channels)
    pyro.set_rng_seed(0)
    results = segment_scan(model, guide, scan, [0, 1, 2], num_samples=8)
    prior = segment_scan(model, guide, scan, None, num_samples=3)[0]
    assert [maps.name for maps in results] == holdout.known.raters and prior.name == "prior"
    assert prior.samples.shape == (3, depth, 22, 20)

    written = []
    for maps in [*results, prior]:
        files = style_files(tmp_path / "out", maps.name, len(maps.samples) if maps.samples is not None else None)
        summary = write_style(maps, scan, files)
        assert summary["volume_ml"] == pytest.approx((maps.mask > 0).sum() * np.prod(SPACING) / 1000)
        written += files.values()
    assert len(written) == 3 * 3 + 3 + 3
    expected = Geometry.of(reference)
    for path in written:
        array, geometry = read_image(path)
        assert geometry.size == expected.size and array.shape == (depth, 1, 22, 20), path
        for name in ("spacing", "origin", "direction"):
            np.testing.assert_allclose(getattr(geometry, name), getattr(expected, name), atol=1e-6, err_msg=str(path))

    inside = np.zeros((22, 20), bool)
    inside[top:top + IMAGE_SIZE, left:left + IMAGE_SIZE] = True
    for rater, maps in enumerate(results):
        assert not maps.mask[:, ~inside].any() and (maps.probability[:, ~inside] == 0).all()
        truth = np.zeros((depth, 22, 20), bool)
        truth[:, inside] = test.annotations[:, rater].reshape(depth, -1).astype(bool)
        same = _dice(maps.mask > 0, truth)
        assert same > 0.5, (rater, same)
        assert same > _dice(maps.mask > 0, np.roll(truth, 1, axis=0)) + 0.2  # slices in the input's order
        assert same > _dice(maps.mask > 0, np.roll(truth, 3, axis=2)) + 0.1  # and at the input's pixels
    assert np.isfinite(results[0].entropy).all() and results[0].entropy.max() <= np.log(2) + 1e-6


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


def test_bad_scans_are_refused_with_the_file_named(tmp_path):
    volume = np.random.default_rng(0).normal(size=(3, 10, 12)).astype(np.float32)
    first = write_scan(volume, tmp_path / "t1.nii.gz")
    shifted = sitk.GetImageFromArray(volume)
    shifted.CopyInformation(first)
    shifted.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(tmp_path / "t2.nii.gz"))
    broken = volume.copy()
    broken[1, 2, 3] = np.nan
    write_scan(broken, tmp_path / "nan.mha")  # (NIfTI readers turn NaN into 0)
    with pytest.raises(DataError, match="t2.nii.gz: channel grid does not match t1.nii.gz: origin"):
        read_scan([tmp_path / "t1.nii.gz", tmp_path / "t2.nii.gz"])
    with pytest.raises(DataError, match="nan.mha: image contains NaN"):
        read_scan([tmp_path / "nan.mha"])
    with pytest.raises(DataError, match="missing.nii.gz: file not found"):
        read_scan([tmp_path / "missing.nii.gz"])
    with pytest.raises(DataError, match="1 channel.*expects 2"):
        read_scan([tmp_path / "t1.nii.gz"], in_channels=2)
    scan = read_scan([tmp_path / "t1.nii.gz"])
    write_scan((volume > 0).astype(np.uint8) * 3, tmp_path / "labels.nii.gz", reference=first)
    with pytest.raises(DataError, match="labels.nii.gz: label values \\[3\\]"):
        read_annotation(tmp_path / "labels.nii.gz", scan, num_classes=2)
    with pytest.raises(DataError, match="annotation grid does not match"):
        read_annotation(tmp_path / "t2.nii.gz", scan, num_classes=2)
