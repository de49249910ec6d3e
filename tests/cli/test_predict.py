"""``proseg-pyro predict``: a folder of scans in, one result per case and a summary table out; an
interrupted run continues; bad folders are one line and exit code 2."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from proseg_pyro.checkpoint import load_checkpoint
from proseg_pyro.cli.main import cli
from proseg_pyro.data.images import Geometry, read_image
from proseg_pyro.outputs import LOCK_NAME, folder_lock
from proseg_pyro.predict import Request, predict_folder

from ..conftest import tiny_config
from ..holdout import holdout_fixture, write_scan  # noqa: F401  (fixture)

CASES = 20


@pytest.fixture
def scans(holdout, tmp_path):
    """20 scans of 2 test slices each, nnU-Net naming (one channel: CASE_0000.nii.gz)."""
    test = holdout.known.split("test").images[:, 0]
    folder = tmp_path / "scans"
    folder.mkdir()
    for case in range(CASES):
        write_scan(test[[case % len(test), (case + 1) % len(test)]], folder / f"case{case:02d}_0000.nii.gz")
    return folder


def run(*args):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def _table(out):
    with open(out / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_folder_of_twenty_scans_gives_twenty_results_and_a_table(holdout, scans, tmp_path):
    out = tmp_path / "out"
    result = run("predict", holdout.checkpoint, "-i", scans, "-o", out, "--rater", "tight", "--rater", "core",
                 "--samples", "2")
    assert result.exit_code == 0, result.output
    assert f"{CASES} case(s): {CASES} segmented, 0 already done" in result.output
    rows = _table(out)
    assert len(rows) == 2 * CASES and {row["style"] for row in rows} == {"tight", "core"}
    assert sorted({row["case"] for row in rows}) == [f"case{case:02d}" for case in range(CASES)]
    expected = Geometry.of(__import__("SimpleITK").ReadImage(str(scans / "case03_0000.nii.gz")))
    summary = json.loads((out / "case03" / "summary.json").read_text())
    mask, geometry = read_image(out / "case03" / "rater-core_mask.nii.gz")
    assert geometry.mismatch(expected, rtol=0, atol=1e-6) is None
    row = next(row for row in rows if row["case"] == "case03" and row["style"] == "core")
    assert float(row["volume_ml"]) == pytest.approx(mask.astype(bool).sum() * expected.voxel_ml, abs=1e-4)
    assert float(row["volume_ml"]) == pytest.approx(summary["raters"]["core"]["volume_ml"], abs=1e-4)
    assert summary["raters"]["core"]["files"]["mask"] == str(out / "case03" / "rater-core_mask.nii.gz")
    assert not list(out.glob(".partial-*"))
    # the same settings again: everything is done; other settings are refused, not mixed in
    again = run("predict", holdout.checkpoint, "-i", scans, "-o", out, "--rater", "tight", "--rater", "core",
                "--samples", "2")
    assert again.exit_code == 0 and f"0 segmented, {CASES} already done" in again.output
    other = run("predict", holdout.checkpoint, "-i", scans, "-o", out, "--rater", "core", "--samples", "3")
    assert other.exit_code == 2 and "other settings" in other.output and "--force" in other.output


def test_an_interrupted_run_continues_with_the_cases_left(holdout, scans, tmp_path):
    model, guide, _ = holdout.load()
    out = tmp_path / "out"
    request = Request([0], 2, 0, str(holdout.checkpoint))
    finished = []

    def interrupt_after_seven(case):
        finished.append(case)
        if len(finished) == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_folder(model, guide, scans, out, request, on_case=interrupt_after_seven)
    assert sorted(path.name for path in out.iterdir() if path.name != LOCK_NAME) == finished
    (out / ".partial-case09").mkdir()  # as a kill in the middle of a case leaves it
    (out / ".partial-case09" / "rater-tight_mask.nii.gz").write_bytes(b"half")
    result = predict_folder(model, guide, scans, out, request)
    assert result.skipped == finished and len(result.segmented) == CASES - 7
    assert len(_table(out)) == CASES and not list(out.glob(".partial-*"))
    assert json.loads((out / "case09" / "summary.json").read_text())["raters"]["tight"]["volume_ml"] >= 0


def test_a_killed_process_is_finished_by_the_next_run(holdout, scans, tmp_path):
    out = tmp_path / "out"
    args = ["predict", str(holdout.checkpoint), "-i", str(scans), "-o", str(out), "--samples", "8"]
    process = subprocess.Popen([sys.executable, "-c", "from proseg_pyro.cli.main import main; main()", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and len([path for path in out.glob("case*")]) < 3:
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = sorted(path.name for path in out.glob("case*"))
    assert len(done) >= 3
    for name in done:  # whatever was renamed into place is complete
        assert (out / name / "summary.json").is_file()
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert f"{CASES - len(done)} segmented, {len(done)} already done" in result.output
    assert len(_table(out)) == 3 * CASES  # three raters each


def test_a_second_writer_of_the_output_folder_is_refused(holdout, scans, tmp_path):
    out = tmp_path / "out"
    with folder_lock(out):
        result = run("predict", holdout.checkpoint, "-i", scans, "-o", out, "--samples", "2")
    assert result.exit_code == 2 and "another process" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not list(out.glob("case*"))


@pytest.mark.parametrize("problem, message", [
    ("empty", "folder holds no readable scans"),
    ("missing channel", "case 'b' misses channel 0000"),
    ("mixed channel counts", "cases have different channel counts"),
])
def test_bad_folders_are_one_line_and_exit_code_2(holdout, tmp_path, problem, message):
    folder = tmp_path / "in"
    folder.mkdir()
    volume = np.zeros((2, 16, 16), np.float32)
    if problem == "missing channel":
        write_scan(volume, folder / "a_0000.nii.gz")
        write_scan(volume, folder / "b_0001.nii.gz")
    elif problem == "mixed channel counts":
        for name in ("a_0000", "b_0000", "b_0001"):
            write_scan(volume, folder / f"{name}.nii.gz")
    else:
        (folder / "notes.txt").write_text("no scans here")
    result = run("predict", holdout.checkpoint, "-i", folder, "-o", tmp_path / "out", "--samples", "2")
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_checkpoint_without_spacing_says_it_uses_the_scans_own(holdout, scans, tmp_path):
    model, guide, config = load_checkpoint(holdout.checkpoint)
    assert config.spacing is None
    result = run("sample", holdout.checkpoint, "--image", scans / "case00_0000.nii.gz", "--out", tmp_path / "one",
                 "--samples", "2")
    assert result.exit_code == 0, result.output
    assert "records no training spacing: the scan is used at its own spacing (0.7, 0.85) mm" in result.output


@pytest.mark.parametrize("tau_prior, named", [("dirichlet", True), ("logistic_normal", False)])
def test_prior_settings_name_alpha_star_only_where_the_draws_take_it(tau_prior, named):
    from proseg_pyro.model import ProSegModel

    model = ProSegModel(tiny_config(tau_prior=tau_prior, alpha_star=0.2))
    prior, rater = Request(None, 2, 0, "m.pt").settings(model), Request([0], 2, 0, "m.pt").settings(model)
    assert ("alpha_star" in prior) is named and prior.get("alpha_star", 0.2) == 0.2
    assert "alpha_star" not in rater
