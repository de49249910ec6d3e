"""Which known rater drew an annotation: the posterior picks the true one on held-out images."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from click.testing import CliRunner

import proseg_pyro.cli.identify  # noqa: F401  (registers the command)
from proseg_pyro.cli.main import cli
from proseg_pyro.identify import log_evidence, posterior

from .holdout import holdout_fixture, write_scan  # noqa: F401  (fixture)


def test_identify_picks_the_true_rater_of_most_test_annotations(holdout):
    model, guide, _ = holdout.load()
    test = holdout.known.split("test")
    x = torch.as_tensor(test.images)
    torch.manual_seed(0)
    hits = []
    for rater in range(3):
        evidence = log_evidence(model, guide, x, torch.as_tensor(test.annotations[:, rater]), [0, 1, 2], 32)
        probabilities = posterior(evidence)
        assert probabilities.shape == (len(x), 3)
        torch.testing.assert_close(probabilities.sum(-1), torch.ones(len(x)))
        hits.append((probabilities.argmax(-1) == rater).float())
    accuracy = torch.cat(hits).mean().item()
    assert accuracy > 0.5, accuracy  # chance: 1/3


def test_posterior_of_a_volume_multiplies_the_slices_evidence():
    evidence = torch.tensor([[-10.0, -12.0], [-11.0, -10.5]])
    joint = posterior(evidence, joint=True)
    torch.testing.assert_close(joint, torch.tensor([-21.0, -22.5]).softmax(-1))
    skewed = posterior(evidence, joint=True, log_prior=torch.tensor([0.0, 10.0]))
    assert skewed[1] > 0.99


def test_identify_command_names_the_rater_of_an_annotated_scan(holdout, tmp_path):
    test = holdout.known.split("test")
    reference = write_scan(test.images[:, 0], tmp_path / "scan.nii.gz")
    rater = 0  # tight
    write_scan(test.annotations[:, rater].astype(np.uint8), tmp_path / "ann.nii.gz", reference=reference)
    result = CliRunner().invoke(cli, ["identify", str(holdout.checkpoint), "--image", str(tmp_path / "scan.nii.gz"),
                                      "--annotation", str(tmp_path / "ann.nii.gz"), "--samples", "16",
                                      "--json", str(tmp_path / "id.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "id.json").read_text())["raters"]
    assert [row["rater"] for row in rows] == holdout.known.raters
    assert max(rows, key=lambda row: row["posterior"])["rater"] == "tight"
    assert sum(row["posterior"] for row in rows) == pytest.approx(1)
    assert result.output.splitlines()[1].startswith("tight")  # the table, most likely first

    moved = sitk.ReadImage(str(tmp_path / "ann.nii.gz"))
    moved.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
    bad = CliRunner().invoke(cli, ["identify", str(holdout.checkpoint), "--image", str(tmp_path / "scan.nii.gz"),
                                   "--annotation", str(tmp_path / "moved.nii.gz")])
    assert bad.exit_code == 2 and "annotation grid does not match the image scan.nii.gz: spacing" in bad.output
