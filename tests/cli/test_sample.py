"""``proseg-pyro sample`` on a whole scan: every output on the input's grid, volumes, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

import proseg_pyro.cli.sample  # noqa: F401  (registers the command)
from proseg_pyro.cli.main import cli
from proseg_pyro.data.images import Geometry, read_image

from ..holdout import holdout_fixture, write_scan  # noqa: F401  (fixture)


@pytest.fixture
def scan(holdout, tmp_path):
    """Five test slices as an anisotropic, rotated MHA volume."""
    path = tmp_path / "scan.mha"
    write_scan(holdout.known.split("test").images[:5, 0], path)
    return path


def run(*args: str):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def test_sample_writes_each_raters_maps_and_volumes_on_the_input_grid(holdout, scan, tmp_path):
    out = tmp_path / "out"
    result = run("sample", holdout.checkpoint, "--image", scan, "--out", out, "--rater", "tight", "--rater", "core",
                 "--samples", "6")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["raters"]) == ["tight", "core"]
    expected = Geometry.of(sitk.ReadImage(str(scan)))
    voxel_ml = np.prod(expected.spacing) / 1000
    assert summary["voxel_ml"] == pytest.approx(voxel_ml)
    for name, row in summary["raters"].items():
        assert set(row["files"]) == {"mask", "probability", "entropy"}
        for path in row["files"].values():
            _, geometry = read_image(path)
            assert geometry.mismatch(expected, rtol=0, atol=1e-6) is None
        mask, _ = read_image(row["files"]["mask"])
        assert row["volume_ml"] == pytest.approx(mask.astype(bool).sum() * voxel_ml)
        spread = row["sample_volume_ml"]
        assert spread["min"] <= spread["p05"] <= spread["median"] <= spread["p95"] <= spread["max"]
    assert summary["raters"]["core"]["volume_ml"] > 0
    assert "tight" in result.output and "volume mL" in result.output
    # the outputs exist now: a second run refuses to overwrite them, unless forced
    again = run("sample", holdout.checkpoint, "--image", scan, "--out", out, "--rater", "core", "--samples", "2")
    assert again.exit_code == 2 and "already exists (use --force" in again.output
    forced = run("sample", holdout.checkpoint, "--image", scan, "--out", out, "--rater", "core", "--samples", "2",
                 "--force")
    assert forced.exit_code == 0, forced.output


def test_prior_writes_every_sample_mask(holdout, scan, tmp_path):
    out = tmp_path / "prior"
    result = run("sample", holdout.checkpoint, "--image", scan, "--out", out, "--prior", "--samples", "4")
    assert result.exit_code == 0, result.output
    samples = sorted((out / "prior_samples").glob("sample_*.nii.gz"))
    assert len(samples) == 4
    expected = Geometry.of(sitk.ReadImage(str(scan)))
    for path in [*samples, out / "prior_mask.nii.gz"]:
        array, geometry = read_image(path)
        assert geometry.mismatch(expected, rtol=0, atol=1e-6) is None and set(np.unique(array)) <= {0, 1}
    assert "prior" in json.loads((out / "summary.json").read_text())


def test_alpha_star_sets_the_prior_draws_and_the_summary_records_it(holdout, scan, tmp_path):
    """tau* from Dir(0.001) sits at the simplex's corners (different styles), from Dir(1000) at its
    centre (one style): the prior samples' volumes spread more with the smaller concentration."""
    spread = {}
    for alpha in ("0.001", "1000"):
        out = tmp_path / f"alpha-{alpha}"
        result = run("sample", holdout.checkpoint, "--image", scan, "--out", out, "--prior", "--alpha-star", alpha,
                     "--samples", "12")
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["alpha_star"] == float(alpha)
        spread[alpha] = summary["prior"]["prior"]["sample_volume_ml"]["std"]
    assert spread["0.001"] > 2 * spread["1000"]


@pytest.mark.parametrize("problem", ["unknown rater", "two channels", "missing", "nan", "rater and prior",
                                     "alpha without prior"])
def test_bad_input_is_one_line_and_exit_code_2(holdout, scan, tmp_path, problem):
    nan = tmp_path / "nan.mha"
    volume = np.zeros((2, 8, 8), np.float32)
    volume[0, 0, 0] = np.nan
    write_scan(volume, nan)
    args = {"unknown rater": ["--image", scan, "--rater", "nobody"],
            "two channels": ["--image", scan, "--image", scan],
            "missing": ["--image", tmp_path / "missing.nii.gz"],
            "nan": ["--image", nan],
            "rater and prior": ["--image", scan, "--rater", "core", "--prior"],
            "alpha without prior": ["--image", scan, "--alpha-star", "0.1"]}[problem]
    result = run("sample", holdout.checkpoint, *args, "--out", tmp_path / "out", "--samples", "2")
    assert result.exit_code == 2, result.output
    message = {"unknown rater": "unknown rater 'nobody'; this checkpoint knows tight, ragged, core",
               "two channels": "the scan has 2 channel(s) but the checkpoint expects 1",
               "missing": "missing.nii.gz: file not found", "nan": "nan.mha: image contains NaN",
               "rater and prior": "either --rater or --prior",
               "alpha without prior": "--alpha-star sets the prior draws: add --prior"}[problem]
    assert message in result.output
    assert not (tmp_path / "out" / "summary.json").exists()
