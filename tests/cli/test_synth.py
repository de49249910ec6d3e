"""``proseg-pyro synth`` writes files that load back to the built-in synthetic set."""
from __future__ import annotations

import numpy as np
from click.testing import CliRunner

import proseg_pyro.cli.synth  # noqa: F401  (registers the command)
from proseg_pyro.cli.main import cli
from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import load_dataset


def test_synth_writes_a_loadable_manifest(tmp_path):
    result = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "syn"), "--num-images", "5",
                                      "--image-size", "32", "--seed", "3"])
    assert result.exit_code == 0, result.output
    manifest = tmp_path / "syn" / "manifest.json"
    assert manifest.is_file() and len(list((tmp_path / "syn").glob("*.nii.gz"))) == 5 * (1 + 4)
    config = ProSegConfig(image_size=32)
    loaded = load_dataset(manifest, config=config)
    expected = load_dataset("synthetic", config=config, num_images=5, seed=3)
    assert loaded.raters == expected.raters and sorted(loaded.splits) == sorted(expected.splits)
    for split in ("train", "val", "test"):  # loaded sets are grouped by split, each split in order
        np.testing.assert_allclose(loaded.split(split).images, expected.split(split).images, atol=1e-5)
        np.testing.assert_array_equal(loaded.split(split).annotations, expected.split(split).annotations)


def test_synth_rejects_bad_values(tmp_path):
    result = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path), "--num-images", "0"])
    assert result.exit_code == 2
    assert "--num-images" in result.output
    assert "synthetic" in CliRunner().invoke(cli, ["synth", "--help"]).output
