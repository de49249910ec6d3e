"""SimpleITK images and DICOM series: voxel order, geometry, components, and bad files named."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from proseg_pyro.data.images import read_image
from proseg_pyro.errors import DataError


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
