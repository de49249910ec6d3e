"""Every CLI command answers bad input with exit code 2 and one line naming the file, never a traceback;
code planted in untrusted files (checkpoints, LIDC pickles) never runs.

Each row of ``CASES`` breaks one thing in a fresh copy of a small valid workspace (a manifest
dataset, a trained checkpoint and its run folder) and names the file the message must mention.
"""
from __future__ import annotations

import importlib
import json
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from click.testing import CliRunner

from proseg_pyro.checkpoint import FORMAT, load_checkpoint, read_checkpoint
from proseg_pyro.cli.main import cli
from proseg_pyro.data.export import write_manifest_dataset
from proseg_pyro.data.formats.lidc import read_lidc_pickle
from proseg_pyro.data.synthetic import make_synthetic
from proseg_pyro.errors import CheckpointError, DataError

from .conftest import tiny_config
from .helpers import Exploit, one_thread  # noqa: F401  (one_thread: a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
COMMANDS = ("train", "evaluate", "compare")
for _command in COMMANDS:
    importlib.import_module(f"proseg_pyro.cli.{_command}")  # registers the command


@dataclass
class Workspace:
    """A valid setup: ``data`` (manifest of 40 synthetic 16x16 images), ``config`` (tiny
    hyperparameters), ``run`` (a trained run folder with ``last.pt``), all under ``root``."""

    root: Path
    data: Path
    config: Path
    run: Path

    @property
    def checkpoint(self) -> Path:
        return self.run / "last.pt"

    @property
    def marker(self) -> Path:
        return self.root / "pwned"

    def edit_manifest(self, change: Callable[[dict], None]) -> None:
        values = json.loads(self.data.read_text())
        change(values)
        self.data.write_text(json.dumps(values))

    def keep_first_raters(self, count: int) -> None:
        """Cut the manifest down to its first ``count`` raters and their annotations."""
        def cut(values: dict) -> None:
            values["raters"] = values["raters"][:count]
            for case in values["cases"]:
                case["annotations"] = {r: case["annotations"][r] for r in values["raters"] if r in case["annotations"]}
        self.edit_manifest(cut)

    def case_file(self, key: str = "image", case: int = 0) -> Path:
        """The file of a manifest case: its image, or a rater's annotation."""
        entry = json.loads(self.data.read_text())["cases"][case]
        name = entry["image"] if key == "image" else entry["annotations"][key]
        return self.data.parent / name

    def first_rater(self) -> str:
        """A rater who annotated the first case."""
        return next(iter(json.loads(self.data.read_text())["cases"][0]["annotations"]))

    def edit_checkpoint(self, **changes) -> Path:
        content = read_checkpoint(self.checkpoint)
        torch.save({**content, **changes}, self.checkpoint)
        return self.checkpoint

    def train(self, *extra: str) -> list[str]:
        """Training into a new folder, or with ``--resume`` continuing the run."""
        out = self.run if "--resume" in extra else self.root / "new-run"
        return ["train", "--data", str(self.data), "--config", str(self.config), "--out", str(out),
                "--device", "cpu", *extra]

    def compare(self, *extra: str) -> list[str]:
        return ["compare", "--data", str(self.data), "--config", str(self.config), "--out", str(self.root / "compare"),
                "--methods", "proseg", "--samples", "4", "--device", "cpu", *extra]

    def evaluate(self, *extra: str) -> list[str]:
        return ["evaluate", str(self.checkpoint), "--data", str(self.data), "--samples", "4", "--device", "cpu",
                *extra]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("template")
    slices, _ = make_synthetic(num_images=40, image_size=16, seed=0)
    data = write_manifest_dataset(slices, root / "data")
    config = root / "tiny.json"
    config.write_text(json.dumps(tiny_config(steps=2).to_dict()))
    space = Workspace(root, data, config, root / "run")
    argv = space.train()
    argv[argv.index("--out") + 1] = str(space.run)
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return space


@pytest.fixture
def space(template, tmp_path, monkeypatch) -> Workspace:
    """A fresh copy of the template workspace (the dataset cache, if any, is left behind)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    shutil.copytree(template.root, tmp_path / "ws", ignore=shutil.ignore_patterns(".cache"))
    moved = lambda path: tmp_path / "ws" / path.relative_to(template.root)  # noqa: E731
    return Workspace(tmp_path / "ws", moved(template.data), moved(template.config), moved(template.run))


# --- the table: each row breaks one thing and returns (argv, file name the message names) ---------
CASES: dict[str, Callable[[Workspace], tuple[list[str], str]]] = {}


def case(breaker: Callable[[Workspace], tuple[list[str], str]]) -> Callable:
    CASES[breaker.__name__] = breaker
    return breaker


@case
def missing_manifest(ws):
    return ws.train()[:2] + [str(ws.root / "absent.json")] + ws.train()[3:], "absent.json"


@case
def unreadable_manifest(ws):
    ws.data.write_bytes(b"\xff\xfe\x00{not text")
    return ws.train(), "manifest.json"


@case
def invalid_json_manifest(ws):
    ws.data.write_text('{"raters": ["A"], "cases": [')
    return ws.train(), "manifest.json"


@case
def manifest_missing_keys(ws):
    ws.edit_manifest(lambda values: values.pop("classes"))
    return ws.train(), "manifest.json"


@case
def unknown_rater(ws):
    ws.edit_manifest(lambda values: values["cases"][0]["annotations"].update(nobody="x.nii.gz"))
    return ws.train(), "manifest.json"


@case
def missing_image(ws):
    file = ws.case_file()
    file.unlink()
    return ws.train(), file.name


@case
def corrupt_nifti(ws):
    file = ws.case_file()
    file.write_bytes(file.read_bytes()[:60])
    return ws.train(), file.name


@case
def corrupt_dicom(ws):
    folder = ws.data.parent / "series"
    folder.mkdir()
    (folder / "0.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    ws.edit_manifest(lambda values: values["cases"][0].update(image="series"))
    return ws.train(), "series"


@case
def annotation_geometry(ws):
    file = ws.case_file(ws.first_rater())
    image = sitk.ReadImage(str(file))
    image.SetSpacing((1.0, 2.0, 1.0))
    sitk.WriteImage(image, str(file))
    return ws.train(), file.name


@case
def annotation_grid(ws):
    file = ws.case_file(ws.first_rater())
    sitk.WriteImage(sitk.ReadImage(str(file))[:8], str(file))
    return ws.train(), file.name


@case
def nan_image(ws):
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(ws.case_file())))
    array[0, 3, 4] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(ws.data.parent / "nan.mha"))
    ws.edit_manifest(lambda values: values["cases"][0].update(image="nan.mha"))
    return ws.train(), "nan.mha"


@case
def labels_outside_classes(ws):
    file = ws.case_file(ws.first_rater())
    image = sitk.ReadImage(str(file))
    sitk.WriteImage(image * 3, str(file))
    return ws.train(), file.name


@case
def empty_train_split(ws):
    ws.edit_manifest(lambda values: [case.update(split="test") for case in values["cases"]])
    return ws.train(), "manifest.json"


@case
def corrupt_h5(ws):
    (ws.root / "npc").mkdir()
    (ws.root / "npc" / "P001.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"junk" * 20)
    return ["train", "--data", str(ws.root / "npc"), "--device", "cpu"], "P001.h5"


@case
def h5_missing_keys(ws):
    (ws.root / "npc").mkdir()
    with h5py.File(ws.root / "npc" / "P001.h5", "w") as handle:
        handle["t1"] = np.zeros((16, 16))
    return ["train", "--data", str(ws.root / "npc"), "--device", "cpu"], "P001.h5"


@case
def h5_wrong_dtype(ws):
    (ws.root / "npc").mkdir()
    with h5py.File(ws.root / "npc" / "P001.h5", "w") as handle:
        for key in ("t1", "t1c", "t2"):
            handle[key] = np.array([["a"] * 4] * 4, dtype="S1")
    return ["train", "--data", str(ws.root / "npc"), "--device", "cpu"], "P001.h5"


@case
def corrupt_pickle(ws):
    (ws.root / "lidc.pkl").write_bytes(pickle.dumps({"a": np.zeros((4, 4))})[:25])
    return ["train", "--data", str(ws.root / "lidc.pkl"), "--device", "cpu"], "lidc.pkl"


@case
def malicious_pickle(ws):
    (ws.root / "lidc.pkl").write_bytes(pickle.dumps({"a": {"image": np.zeros((4, 4)), "masks": [Exploit(ws.marker)]}}))
    return ["train", "--data", str(ws.root / "lidc.pkl"), "--device", "cpu"], "lidc.pkl"


@case
def pickle_not_a_zip(ws):
    (ws.root / "lidc.zip").write_bytes(b"PK\x03\x04 not really")
    return ["train", "--data", str(ws.root / "lidc.zip"), "--device", "cpu"], "lidc.zip"


@case
def pickle_string_masks(ws):
    records = {"a": {"image": np.zeros((4, 4)), "masks": [np.full((4, 4), "x")], "series_uid": "s"}}
    (ws.root / "lidc.pkl").write_bytes(pickle.dumps(records))
    return ["train", "--data", str(ws.root / "lidc.pkl"), "--device", "cpu"], "lidc.pkl"


@case
def compare_missing_manifest(ws):
    ws.data.unlink()
    return ws.compare(), "manifest.json"


@case
def compare_corrupt_image(ws):
    file = ws.case_file()
    file.write_bytes(b"garbage")
    return ws.compare(), file.name


@case
def compare_invalid_config(ws):
    ws.config.write_text("{")
    return ws.compare(), "tiny.json"


@case
def config_invalid_json(ws):
    ws.config.write_text("{")
    return ws.train(), "tiny.json"


@case
def config_unknown_key(ws):
    ws.config.write_text(json.dumps({"learning_rate": 0.1}))
    return ws.train(), "tiny.json"


@case
def config_missing(ws):
    ws.config.unlink()
    return ws.train(), "tiny.json"


@case
def resume_other_config(ws):
    return ws.train("--resume", "--lr", "0.5"), "last.pt"


@case
def resume_other_shapes(ws):
    config = json.loads(ws.config.read_text())
    ws.config.write_text(json.dumps({**config, "base_channels": 4}))
    return ws.train("--resume"), "last.pt"


@case
def resume_other_method(ws):
    ws.edit_checkpoint(method="elsewhere")
    return ws.train("--resume"), "last.pt"


@case
def resume_best_checkpoint(ws):
    shutil.copy(ws.run / "best.pt", ws.checkpoint)  # has no optimiser or RNG state
    return ws.train("--resume"), "last.pt"


@case
def missing_checkpoint(ws):
    ws.checkpoint.unlink()
    return ws.evaluate(), "last.pt"


@case
def truncated_checkpoint(ws):
    ws.checkpoint.write_bytes(ws.checkpoint.read_bytes()[:3000])
    return ws.evaluate(), "last.pt"


@case
def zip_not_a_checkpoint(ws):
    with zipfile.ZipFile(ws.checkpoint, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return ws.evaluate(), "last.pt"


@case
def checkpoint_of_a_tensor(ws):
    torch.save(torch.zeros(3), ws.checkpoint)
    return ws.evaluate(), "last.pt"


@case
def checkpoint_other_version(ws):
    ws.edit_checkpoint(format="proseg-pyro/0")
    return ws.evaluate(), "last.pt"


@case
def checkpoint_unknown_method(ws):
    ws.edit_checkpoint(method="elsewhere")
    return ws.evaluate(), "last.pt"


@case
def checkpoint_bad_config(ws):
    config = read_checkpoint(ws.checkpoint)["config"]
    ws.edit_checkpoint(config={**config, "depth": -1})
    return ws.evaluate(), "last.pt"


@case
def checkpoint_weights_mismatch(ws):
    config = read_checkpoint(ws.checkpoint)["config"]
    ws.edit_checkpoint(config={**config, "base_channels": 4})
    return ws.evaluate(), "last.pt"


@case
def malicious_checkpoint(ws):
    torch.save({"format": "proseg-pyro/1", "payload": Exploit(ws.marker)}, ws.checkpoint)
    return ws.evaluate(), "last.pt"


@case
def evaluate_other_raters(ws):
    def rename(values):
        values["raters"] = [f"R{i}" for i in range(len(values["raters"]))]
        for case in values["cases"]:
            case["annotations"] = {f"R{i}": path for i, path in enumerate(case["annotations"].values())}
    ws.edit_manifest(rename)
    return ws.evaluate(), "manifest.json"


@case
def evaluate_fewer_raters(ws):
    ws.keep_first_raters(2)
    return ws.evaluate(), "manifest.json"


@case
def evaluate_other_channels(ws):
    ws.edit_manifest(lambda values: [case.update(image=[case["image"]] * 2) for case in values["cases"]])
    return ws.evaluate(), "manifest.json"


@case
def evaluate_empty_split(ws):
    ws.edit_manifest(lambda values: [case.update(split="train") for case in values["cases"]])
    return ws.evaluate(), "manifest.json"


@case
def evaluate_corrupt_image(ws):
    file = ws.case_file(case=-1)
    file.write_bytes(b"garbage")
    return ws.evaluate(), file.name


@case
def evaluate_too_few_samples(ws):
    return ws.evaluate("--samples", "2"), "--samples"


@case
def evaluate_existing_output(ws):
    (ws.root / "table.json").write_text("{}")
    return ws.evaluate("--json", str(ws.root / "table.json")), "table.json"


@pytest.mark.parametrize("breaker", CASES.values(), ids=CASES.keys())
def test_bad_input_gives_one_line_and_exit_code_2(space, breaker):
    argv, name = breaker(space)
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and name in lines[0], result.stderr
    assert not space.marker.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", COMMANDS)
def test_cuda_without_gpu(space, command):
    argv = getattr(space, command)()
    argv[argv.index("--device") + 1] = "cuda"
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        "Error: --device cuda: no CUDA device is available on this machine"]


@pytest.mark.parametrize("argv, option", [(["train", "--data", "x.json", "--lidc", "y.pkl"], "--lidc"),
                                          (["train", "--out", "{config}"], "--out"),
                                          (["evaluate", "{checkpoint}", "--samples", "0"], "--samples")])
def test_usage_errors_exit_2(space, argv, option):
    argv = [arg.format(config=space.config, checkpoint=space.checkpoint) for arg in argv]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert option in result.stderr


def test_checkpoint_of_another_method_is_refused_where_proseg_is_expected(space):
    space.edit_checkpoint(method="dpersona")
    with pytest.raises(CheckpointError, match="last.pt: checkpoint holds method 'dpersona', not 'proseg'"):
        load_checkpoint(space.checkpoint, method="proseg")


def _evil_checkpoint(path: Path, marker: Path) -> Callable[[], object]:
    torch.save({"format": FORMAT, "model": Exploit(marker)}, path)
    return lambda: torch.load(path, weights_only=False)


def _evil_lidc_pickle(path: Path, marker: Path) -> Callable[[], object]:
    path.write_bytes(pickle.dumps({"k": {"image": np.zeros((4, 4)), "masks": [Exploit(marker)]}}))
    return lambda: pickle.loads(path.read_bytes())


@pytest.mark.parametrize("plant, load", [(_evil_checkpoint, read_checkpoint), (_evil_lidc_pickle, read_lidc_pickle)],
                         ids=["checkpoint", "lidc-pickle"])
def test_code_planted_in_an_untrusted_file_never_runs(tmp_path, plant, load):
    marker = tmp_path / "pwned"
    load_unsafely = plant(tmp_path / "evil.bin", marker)
    with pytest.raises(DataError, match="evil.bin"):
        load(tmp_path / "evil.bin")
    assert not marker.exists()
    load_unsafely()
    assert marker.exists()  # a plain unpickler would have run the planted code
