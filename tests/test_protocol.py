"""The paper's protocol: LIDC's four patient folds as released, NPC's splits, per-volume scoring and
the mean and spread over folds, through the commands on tiny files in the published layouts."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import proseg_pyro.cli.compare  # noqa: F401  (registers the commands)
import proseg_pyro.cli.evaluate  # noqa: F401
import proseg_pyro.cli.train  # noqa: F401
from proseg_pyro.cli.main import cli
from proseg_pyro.data.slices import SliceSet
from proseg_pyro.errors import DataError
from proseg_pyro.protocol import lidc_fold, lidc_patient_folds, mean_and_spread, npc_splits

from .conftest import tiny_config

PATIENTS = [f"LIDC-{n:04d}" for n in range(9)]


def _slices(subjects: list[str], case_ids: list[str] | None = None) -> SliceSet:
    count = len(subjects)
    return SliceSet(np.zeros((count, 1, 2, 2), np.float32), np.zeros((count, 1, 2, 2), np.int64),
                    np.ones((count, 1), bool), ["A"], ["background", "lesion"], list(subjects),
                    case_ids or [f"case{i}" for i in range(count)])


def test_lidc_folds_are_the_released_shuffle_cut_in_four():
    # the released code: patients in order of first appearance, np.random.seed(1337), np.random.shuffle,
    # then KFold(4) without shuffling (contiguous parts, the first n % 4 one larger)
    subjects = [patient for patient in PATIENTS for _ in range(2)]  # two images each
    released = list(PATIENTS)
    np.random.seed(1337)
    np.random.shuffle(released)
    folds = lidc_patient_folds(subjects)
    assert [len(fold) for fold in folds] == [3, 2, 2, 2]
    assert sum(folds, []) == released
    # the order of first appearance decides, as in the released code
    assert lidc_patient_folds(PATIENTS[::-1]) != folds
    with pytest.raises(DataError, match="at least 4 patients"):
        lidc_patient_folds(PATIENTS[:3])


def test_lidc_fold_splits_by_patient_with_a_validation_share():
    subjects = [patient for patient in PATIENTS for _ in range(2)]
    folds = lidc_patient_folds(subjects)
    tested = []
    for k in range(4):
        split = lidc_fold(_slices(subjects), k)
        by_patient: dict[str, set[str]] = {}
        for subject, name in zip(split.subjects, split.splits):
            by_patient.setdefault(subject, set()).add(name)
        assert all(len(names) == 1 for names in by_patient.values())  # never a patient in two splits
        test = sorted(s for s, names in by_patient.items() if names == {"test"})
        val = [s for s, names in by_patient.items() if names == {"val"}]
        assert test == sorted(folds[k])
        # 10% of the 6 or 7 training patients, at least one: the last in shuffled order
        training = [p for j, fold in enumerate(folds) if j != k for p in fold]
        assert val == training[-1:]
        tested += test
    assert sorted(tested) == sorted(PATIENTS)  # every patient is tested exactly once


def test_npc_splits_keep_sub_folders_else_follow_the_released_patients(tmp_path):
    subjects = ["Sample_3", "Sample_79", "Sample_80", "Sample_99", "Sample_120", "Sample_5"]
    cases = ["Sample_3_slice_1", "Sample_79", "Sample_80", "Sample_99", "Sample_120", "testing/Sample_5"]
    split = npc_splits(_slices(subjects, cases), tmp_path)
    assert split.splits == ["train", "train", "val", "val", "test", "test"]
    with pytest.raises(DataError, match=r"no 'test' cases") as err:
        npc_splits(_slices(subjects[:4], cases[:4]), tmp_path)
    assert str(tmp_path) in str(err.value)


def test_mean_and_spread_over_folds_by_hand():
    mean, spread = mean_and_spread([{"ged": 0.2, "dice_rater": [1.0, 0.5]}, {"ged": 0.4, "dice_rater": [0.5, 0.5]}])
    assert mean == {"ged": pytest.approx(0.3), "dice_rater": pytest.approx([0.75, 0.5])}
    assert spread == {"ged": pytest.approx(0.1), "dice_rater": pytest.approx([0.25, 0.0])}  # ddof 0


# --- the commands on tiny files in the published layouts -------------------------------------------
def _lidc_pickle(path: Path, patients: int = 4, images: int = 2) -> Path:
    """The Probabilistic U-Net pickle: 16x16 images 0-255, 4 masks each, ``series_uid`` PATIENT_IMAGE."""
    rng = np.random.default_rng(0)
    records = {}
    for patient in range(patients):
        for image in range(images):
            blob = np.zeros((16, 16), np.float32)
            blob[4:10, 5:11] = 1.0
            masks = [np.roll(blob, shift, axis=1) for shift in range(4)]
            records[f"p{patient}_{image}"] = {"image": (rng.random((16, 16)) * 60 + blob * 150).astype(np.uint8),
                                              "masks": masks, "series_uid": f"p{patient:02d}_{image}"}
    path.write_bytes(pickle.dumps(records))
    return path


def _npc_case(path: Path, shape: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for key in ("t1", "t1c", "t2"):
            handle[key] = rng.normal(size=shape).astype(np.float32)
        for rater in range(1, 5):
            label = np.zeros(shape, np.uint8)
            label[..., 4:9 + rater, 4:10] = 1
            handle[f"label_a{rater}"] = label


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def tiny_json(tmp_path) -> Path:
    path = tmp_path / "tiny.json"
    tiny_config(steps=1, val_every=1).to_json(path)
    return path


def test_four_lidc_folds_train_evaluate_and_average(tmp_path, tiny_json):
    pkl = _lidc_pickle(tmp_path / "lidc.pkl")
    run = tmp_path / "run"
    data = ["--data", pkl, "--protocol", "paper", "--no-cache"]
    output = _invoke("train", *data, "--config", tiny_json, "--out", run, "--device", "cpu")
    assert [line.split(":")[0] for line in output.splitlines() if "best step" in line] == \
        [f"fold-{k}" for k in range(4)]
    assert all((run / f"fold-{k}" / "best.pt").is_file() for k in range(4))
    _invoke("evaluate", run, *data, "--samples", "4", "--convention", "dpersona", "--device", "cpu",
            "--alpha-star", "0.02")
    folds = [json.loads((run / f"fold-{k}" / "test.json").read_text()) for k in range(4)]
    assert [fold["settings"]["alpha_star"] for fold in folds] == [0.02] * 4  # every fold's prior draws took it
    # each fold tests its own patients' images (each image a case), every image exactly once
    cases = [case["id"] for fold in folds for case in fold["cases"]]
    assert sorted(cases) == sorted(f"p{p}_{i}" for p in range(4) for i in range(2))
    for fold in folds:
        assert len({case["id"].split("_")[0] for case in fold["cases"]}) == 1  # 4 patients in 4 folds
    summary = json.loads((run / "test.json").read_text())
    for row in ("personalised", "prior"):
        for metric in ("ged", "dice_soft", "dice_max", "dice_match", "dice_mean"):
            values = [fold["rows"][row][metric] for fold in folds]
            assert summary["mean"][row][metric] == pytest.approx(np.mean(values))
            assert summary["sd"][row][metric] == pytest.approx(np.std(values))
        # the released rules: matched D_Ai, so D_mean equals D_match when every rater annotates
        assert summary["mean"][row]["dice_mean"] == pytest.approx(summary["mean"][row]["dice_match"])
    table = (run / "test.md").read_text()
    assert table.startswith("Means over the 4 test folds") and table.count("| fold-") == 8
    # a second evaluation would overwrite: refused, nothing lost
    again = CliRunner().invoke(cli, ["evaluate", str(run), *map(str, data), "--samples", "4", "--device", "cpu"])
    assert again.exit_code == 2 and "already exists" in again.output


def test_compare_runs_the_four_lidc_folds_and_pools_their_cases(tmp_path, tiny_json):
    pkl = _lidc_pickle(tmp_path / "lidc.pkl")
    out = tmp_path / "compare"
    _invoke("compare", "--data", pkl, "--protocol", "paper", "--no-cache", "--config", tiny_json,
            "--methods", "proseg,majority_vote", "--samples", "4", "--out", out, "--device", "cpu")
    folds = [json.loads((out / f"fold-{k}" / "comparison.json").read_text()) for k in range(4)]
    summary = json.loads((out / "comparison.json").read_text())
    for method in ("proseg", "majority_vote"):
        rows = [fold["methods"][method]["rows"]["personalised"] for fold in folds]
        merged = summary["methods"][method]
        assert merged["rows"]["personalised"]["dice_match"] == pytest.approx(np.mean([r["dice_match"] for r in rows]))
        assert merged["spread"]["personalised"]["ged"] == pytest.approx(np.std([r["ged"] for r in rows]))
        assert len(merged["per_case"]["personalised"]["ged"]) == 8  # all folds' test cases together
    assert summary["wilcoxon"]["majority_vote"]["prior"]["ged"]["cases"] == 8
    assert "mean +- sd over the 4 test folds" in (out / "comparison.md").read_text()


def test_npc_paper_protocol_scores_each_test_volume(tmp_path, tiny_json):
    folder = tmp_path / "npc"
    for n in range(3):
        for z in range(2):
            _npc_case(folder / "training_2d" / f"Sample_{n}_slice_{z}.h5", (16, 16), seed=10 * n + z)
    _npc_case(folder / "validation" / "Sample_80.h5", (2, 16, 16), seed=80)
    for n, depth in ((90, 3), (91, 2)):
        _npc_case(folder / "testing" / f"Sample_{n}.h5", (depth, 16, 16), seed=n)
    data = ["--data", folder, "--protocol", "paper", "--no-cache"]
    _invoke("train", *data, "--config", tiny_json, "--out", tmp_path / "run", "--device", "cpu")
    _invoke("evaluate", tmp_path / "run" / "best.pt", *data, "--samples", "4", "--json", tmp_path / "test.json",
            "--device", "cpu")
    result = json.loads((tmp_path / "test.json").read_text())
    assert [(case["id"], case["slices"]) for case in result["cases"]] == [("testing/Sample_90", 3),
                                                                            ("testing/Sample_91", 2)]
    assert result["settings"]["per"] == "case"
    refused = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "run" / "best.pt"), *map(str, data), "--per-slice"])
    assert refused.exit_code == 2 and "scores each case volume" in refused.output


@pytest.mark.parametrize("command", ["train", "evaluate", "compare"])
def test_the_paper_protocol_refuses_other_sources(tmp_path, command):
    manifest = tmp_path / "data.json"
    manifest.write_text(json.dumps({"raters": ["A"], "classes": ["background", "lesion"], "cases": []}))
    args = {"train": ["train", "--out", str(tmp_path / "run")], "evaluate": ["evaluate", str(tmp_path / "x.pt")],
            "compare": ["compare", "--out", str(tmp_path / "cmp")]}[command]
    result = CliRunner().invoke(cli, [*args, "--data", str(manifest), "--protocol", "paper"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {manifest}: --protocol paper applies to LIDC pickles and NPC folders, not to a manifest source"]
