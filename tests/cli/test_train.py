"""``train`` on slices larger than the patch: patches from the whole field of view, validation on whole slices."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import proseg_pyro.cli.train  # noqa: F401  (registers the command)
from proseg_pyro import train
from proseg_pyro.cli.main import cli
from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import load_dataset
from proseg_pyro.data.export import write_manifest_dataset
from proseg_pyro.data.slices import SliceSet

from ..conftest import tiny_config

SIZE = 48  # slices of 48x48, patches of 16x16
LESION = (slice(38, 42), slice(4, 8))  # a 4x4 lesion near the bottom-left corner, far outside the centre crop


@pytest.fixture(scope="module")
def corner_lesions(tmp_path_factory):
    """A manifest of 12 slices whose two raters mark only a lesion in a corner."""
    rng = np.random.default_rng(0)
    count = 12
    images = rng.normal(size=(count, 1, SIZE, SIZE)).astype(np.float32)
    images[(slice(None), 0, *LESION)] += 4
    annotations = np.zeros((count, 2, SIZE, SIZE), np.uint8)
    annotations[(slice(None), slice(None), *LESION)] = 1
    subjects = [f"s{index:02d}" for index in range(count)]
    splits = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    slices = SliceSet(images, annotations, np.ones((count, 2), bool), ["A", "B"], ["background", "lesion"],
                      subjects, list(subjects), splits, "corner")
    return write_manifest_dataset(slices, tmp_path_factory.mktemp("corner"))


def _train(manifest, tmp_path, monkeypatch, **config) -> tuple[list, list]:
    """Run ``train`` for 4 steps (validating every 2) and return the label patches of every batch
    drawn and the images of every validation."""
    patches, validated = [], []

    def draw_batch(*args, **kwargs):
        batch = draw(*args, **kwargs)
        patches.append(batch[1])
        return batch

    def validation_dice(model, guide, data, *args):
        validated.append(np.array(data[0]))
        return dice(model, guide, data, *args)

    draw, dice = train.draw_batch, train.validation_dice
    monkeypatch.setattr(train, "draw_batch", draw_batch)
    monkeypatch.setattr(train, "validation_dice", validation_dice)
    tiny_config(steps=4, val_every=2, **config).to_json(tmp_path / "config.json")
    result = CliRunner().invoke(cli, ["train", "--data", str(manifest), "--config", str(tmp_path / "config.json"),
                                      "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return patches, validated


def test_training_cuts_patches_from_the_whole_field_of_view(corner_lesions, tmp_path, monkeypatch):
    # a centre crop to the patch size holds none of the lesion
    assert load_dataset(corner_lesions, "train", tiny_config()).annotations.sum() == 0
    patches, validated = _train(corner_lesions, tmp_path, monkeypatch, foreground_share=1.0)
    assert len(patches) == 4 and all(batch.shape == (8, 2, 16, 16) for batch in patches)
    # every patch is centred on a rater's foreground (shifted by at most a quarter patch): it holds the lesion
    assert all(bool((batch.sum((-3, -2, -1)) > 0).all()) for batch in patches)
    # validation scores the 2 validation slices whole (48 is a multiple of 2 ** depth = 4)
    assert len(validated) == 2 and all(images.shape == (2, 1, SIZE, SIZE) for images in validated)


def test_random_patches_cover_the_field_of_view(corner_lesions, tmp_path, monkeypatch):
    patches, _ = _train(corner_lesions, tmp_path, monkeypatch, foreground_share=0.0)
    hits = np.mean([float((batch.sum((-3, -2, -1)) > 0).float().mean()) for batch in patches])
    assert 0 < hits < 1  # some random 16x16 patches of a 48x48 slice hold the corner lesion, most do not


def test_resize_mode_trains_and_validates_on_resized_slices(corner_lesions, tmp_path, monkeypatch):
    patches, validated = _train(corner_lesions, tmp_path, monkeypatch, resize="resize")
    assert all(batch.shape == (8, 2, 16, 16) for batch in patches)
    assert all(images.shape == (2, 1, 16, 16) for images in validated)
    resized = load_dataset(corner_lesions, "val", ProSegConfig(image_size=16, resize="resize"))
    np.testing.assert_allclose(validated[0], resized.images, atol=1e-6)
