"""``proseg-pyro demo --real``: a real set's expert distances printed, a bad one refused before writing."""
from __future__ import annotations

import numpy as np
from click.testing import CliRunner

import proseg_pyro.cli.demo  # noqa: F401  (registers the command)
from proseg_pyro.cli.main import cli
from proseg_pyro.data.export import write_manifest_dataset

from ..real_like import RATER_SCALES, cells_set

TINY = ["--images", "20", "--image-size", "16", "--steps", "2", "--samples", "4"]


def test_the_real_sets_expert_matrix_is_printed_beside_the_built_in_one(tmp_path):
    manifest = write_manifest_dataset(cells_set(num_images=10, size=64), tmp_path / "cells")
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo"), "--real", str(manifest), *TINY])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if f"{len(RATER_SCALES)} raters)" in line)
    assert "10 slices" in header
    rows = result.output.split(header)[1].strip().splitlines()[1:1 + len(RATER_SCALES)]
    matrix = np.array([[float(value) for value in row.split()[1:]] for row in rows])
    # the raters outline the same cells at radii x0.8 ... x1.25: the two extremes lie furthest apart
    assert np.allclose(np.diag(matrix), 0) and np.allclose(matrix, matrix.T)
    assert matrix.max() == matrix[0, -1] > matrix[0, 1] > 0


def test_a_corrupt_real_set_is_refused_before_anything_is_written(tmp_path):
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"not a zip")
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo"), "--real", str(corrupt), *TINY])
    assert result.exit_code == 2, result.output
    assert "corrupt.zip" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "demo").exists()


def test_fewer_samples_than_the_built_in_raters_are_refused_before_training(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo"), *TINY[:-1], "3"])
    assert result.exit_code == 2 and "--samples" in result.output and "got 3" in result.output
    assert not (tmp_path / "demo").exists()
