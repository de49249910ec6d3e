"""Scans in, scans out: the preprocessing and its inverse, the whole field of view, spacing, geometry."""
from __future__ import annotations

import numpy as np
import pyro
import pytest
import SimpleITK as sitk
import torch

from proseg_pyro.checkpoint import read_checkpoint, save_checkpoint
from proseg_pyro.data.images import Geometry, read_image, resample
from proseg_pyro.data.preprocess import Preprocess
from proseg_pyro.errors import DataError
from proseg_pyro.volume import prepare_scan, read_annotation, read_scan, segment_scan, style_files, write_style

from .holdout import IMAGE_SIZE, SPACING, holdout_fixture, tiny_holdout_config, write_scan  # noqa: F401  (fixture)


@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_the_way_back_undoes_the_fit_to_the_model(mode):
    """A map sent through the preprocessing (padded on both axes to a multiple of 2**depth, or
    resized) and back returns exactly (crop mode: nothing is cut) or close to it (resize)."""
    preprocess = Preprocess.of(tiny_holdout_config(resize=mode))
    height, width = 23, 11
    rows, columns = np.mgrid[0:height, 0:width] / 8.0
    foreground = (0.5 + 0.4 * np.sin(rows + np.arange(3)[:, None, None]) * np.cos(columns)).astype(np.float32)
    classes = np.stack([1 - foreground, foreground], 1)  # (Z, K, H, W)
    geometry = Geometry((width, height, 3), (0.5, 0.6, 2.0), (1.0, 2.0, 3.0), tuple(np.eye(3).ravel()))
    prepared = preprocess.forward(classes, geometry)
    expected = (24, 16) if mode == "crop" else (IMAGE_SIZE, IMAGE_SIZE)  # 23 -> 24 (multiple of 4), 11 -> 16
    assert prepared.images.shape == (3, 2, *expected)
    back = preprocess.inverse(_fit(classes, preprocess, prepared), prepared)
    assert back.shape == (3, 2, height, width)
    if mode == "crop":
        np.testing.assert_array_equal(back, classes)
        assert prepared.region == (0, 2, height, width)
        # the padding holds each slice channel's minimum
        np.testing.assert_array_equal(prepared.images[..., :2], np.broadcast_to(
            prepared.images.min(axis=(-2, -1), keepdims=True), (3, 2, 24, 2)))
    else:
        np.testing.assert_allclose(back, classes, atol=0.05)


def _fit(maps: np.ndarray, preprocess: Preprocess, prepared) -> np.ndarray:
    """``maps`` (Z, L, H, W) on the scan grid brought to the model's input without normalising."""
    if preprocess.resize == "resize":
        return torch.nn.functional.interpolate(torch.as_tensor(maps), size=prepared.images.shape[-2:],
                                               mode="bilinear", align_corners=False).numpy()
    top, left, rows, columns = prepared.region
    out = np.zeros((*maps.shape[:2], *prepared.images.shape[-2:]), maps.dtype)
    out[..., top:top + rows, left:left + columns] = maps
    return out


def test_scan_slices_are_preprocessed_as_training_preprocesses_them(holdout, tmp_path):
    """Slices of a scan reach the model exactly as the manifest reader gives them to training."""
    config = holdout.load()[2]
    volume = holdout.slices.images[:5, 0] * 40 + 300  # another intensity scale: z-scored per slice again
    write_scan(volume, tmp_path / "scan.nii.gz")
    scan = read_scan([tmp_path / "scan.nii.gz"], config.in_channels)
    np.testing.assert_allclose(prepare_scan(scan, config).images, holdout.slices.images[:5], atol=1e-4)


def test_outputs_have_the_scans_geometry_and_line_up_with_its_slices(holdout, tmp_path):
    """A rotated, anisotropic NIfTI goes in; every volume that comes out has its exact grid, the
    masks sit on the lesions of the same slices, and the plain border around them is sampled too
    (mostly background, never set to it)."""
    model, guide, config = holdout.load()
    test = holdout.known.split("test")
    depth, top, left = len(test), 3, 2  # the 16x16 slices inside a 22x20 grid (padded to 24x20 for the model)
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
        assert maps.mask[:, ~inside].mean() < 0.05 and (maps.probability[:, ~inside] > 0).any()
        truth = np.zeros((depth, 22, 20), bool)
        truth[:, inside] = test.annotations[:, rater].reshape(depth, -1).astype(bool)
        same = _dice(maps.mask > 0, truth)
        assert same > 0.5, (rater, same)
        assert same > _dice(maps.mask > 0, np.roll(truth, 1, axis=0)) + 0.2  # slices in the input's order
        assert same > _dice(maps.mask > 0, np.roll(truth, 3, axis=2)) + 0.1  # and at the input's pixels
    assert np.isfinite(results[0].entropy).all() and results[0].entropy.max() <= np.log(2) + 1e-6


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


def test_a_scan_three_times_the_training_size_is_segmented_everywhere(holdout, tmp_path):
    """Each slice of a 48x48 scan is a 3x3 mosaic of 16x16 test images: the lesions in the corner
    tile, far outside a centre crop of the training size, are found as well as when the same images
    are segmented alone, and every tile is covered."""
    model, guide, config = holdout.load()
    test = holdout.known.split("test")
    count = len(test)
    tiles = [(row, column) for row in range(3) for column in range(3)]
    canvas = np.zeros((count, 48, 48), np.float32)
    truth = np.zeros((count, len(test.raters), 48, 48), bool)
    for tile, (row, column) in enumerate(tiles):
        order = (np.arange(count) + tile) % count  # tile (0, 0) of slice k is test image k
        where = np.s_[:, row * 16:(row + 1) * 16, column * 16:(column + 1) * 16]
        canvas[where] = test.images[order, 0]
        truth[:, :, row * 16:(row + 1) * 16, column * 16:(column + 1) * 16] = test.annotations[order].astype(bool)
    write_scan(canvas, tmp_path / "large.nii.gz")
    write_scan(test.images[:, 0], tmp_path / "alone.nii.gz")
    pyro.set_rng_seed(0)
    large = segment_scan(model, guide, read_scan([tmp_path / "large.nii.gz"]), [0, 1, 2], num_samples=8)
    alone = segment_scan(model, guide, read_scan([tmp_path / "alone.nii.gz"]), [0, 1, 2], num_samples=8)
    centre = np.zeros((48, 48), bool)
    centre[16:32, 16:32] = True  # what a centre crop of the training size kept
    for rater, (big, small) in enumerate(zip(large, alone)):
        corner = _dice(big.mask[:, :16, :16] > 0, truth[:, rater, :16, :16])
        reference = _dice(small.mask > 0, test.annotations[:, rater].astype(bool))
        assert corner > 0.5 and corner > reference - 0.1, (rater, corner, reference)
        assert _dice(big.mask > 0, truth[:, rater]) > 0.5
        assert (big.probability[:, ~centre] > 0).mean() > 0.5  # sampled, not set to background
        assert np.isfinite(big.entropy).all() and (big.entropy[:, ~centre] > 0).mean() > 0.5


def _with_spacing(holdout, tmp_path, spacing):
    """The holdout checkpoint with a training spacing recorded in its config."""
    content = read_checkpoint(holdout.checkpoint)
    content["config"] = {**content["config"], "spacing": spacing}
    save_checkpoint(tmp_path / "spaced.pt", **{key: value for key, value in content.items() if key != "format"})
    from proseg_pyro.checkpoint import load_checkpoint
    return load_checkpoint(tmp_path / "spaced.pt")


def test_the_same_scan_at_twice_the_resolution_gives_the_same_volumes(holdout, tmp_path):
    """Test slices at the training spacing, and the same slices resampled to half the voxel size
    (twice the pixels per axis): both are brought to the training spacing, and the volumes in mL
    agree within 20%. Every output stays on its own scan's grid."""
    model, guide, config = _with_spacing(holdout, tmp_path, list(SPACING[:2]))
    test = holdout.known.split("test")
    reference = write_scan(test.images[:, 0], tmp_path / "1x.nii.gz")
    geometry = Geometry.of(reference)
    fine = geometry.with_in_plane_spacing((SPACING[0] / 2, SPACING[1] / 2))
    assert fine.size[:2] == (32, 32)
    image = sitk.GetImageFromArray(resample(test.images[:, 0], geometry, fine, labels=False))
    image.SetSpacing(fine.spacing), image.SetOrigin(fine.origin), image.SetDirection(fine.direction)
    sitk.WriteImage(image, str(tmp_path / "2x.nii.gz"))
    volumes = {}
    for name in ("1x", "2x"):
        scan = read_scan([tmp_path / f"{name}.nii.gz"])
        prepared = prepare_scan(scan, config)
        assert prepared.images.shape[-2:] == (16, 16) and not prepared.notes
        pyro.set_rng_seed(0)
        maps = segment_scan(model, guide, scan, [0, 1, 2], num_samples=8, prepared=prepared)
        assert maps[0].mask.shape == (len(test), *scan.images.shape[-2:])
        volumes[name] = np.array([(style.mask > 0).sum() * scan.voxel_ml for style in maps])
        spread = np.array([style.sample_voxels.mean() * scan.voxel_ml for style in maps])
        np.testing.assert_allclose(spread, volumes[name], rtol=0.25)
    assert (volumes["1x"] > 0).all()
    np.testing.assert_allclose(volumes["2x"], volumes["1x"], rtol=0.2)


def test_scans_far_from_the_training_spacing_or_size_still_run_with_one_warning_line(holdout, tmp_path):
    model, guide, config = _with_spacing(holdout, tmp_path, [0.2, 0.2])
    write_scan(holdout.known.split("test").images[:2, 0], tmp_path / "scan.nii.gz")
    scan = read_scan([tmp_path / "scan.nii.gz"])
    prepared = prepare_scan(scan, config)
    assert len(prepared.notes) == 1 and "more than 2x" in prepared.notes[0]
    # rows 16 * 0.85 / 0.2, columns 16 * 0.7 / 0.2
    assert prepared.model.spacing[:2] == (0.2, 0.2) and prepared.images.shape[-2:] == (68, 56)
    small = prepare_scan(read_scan([tmp_path / "scan.nii.gz"]), config.replace(spacing=[1.4, 1.7]))
    assert any("smaller than one training patch" in note for note in small.notes)
    assert small.images.shape[-2:] == (16, 16)
    maps = segment_scan(model, guide, scan, [0], num_samples=2, prepared=prepared)[0]
    assert maps.mask.shape == (2, 16, 16)
    unspaced = prepare_scan(scan, holdout.load()[2])
    assert unspaced.notes == ["the model records no training spacing: the scan is used at its own spacing "
                              "(0.7, 0.85) mm"]


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
