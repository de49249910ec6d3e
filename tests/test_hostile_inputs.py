"""Hostile inputs through the command line: each ends in exit code 2 with exactly one ``Error:`` line
naming the file or option (no traceback, no hang, no memory blow-up), and earlier outputs are kept.

Each row of ``CASES`` builds one hostile input in a fresh copy of a small valid workspace (see
``tests/test_reliability_cli.py``, whose rows are the plain bad inputs) and belongs to one class:
lost data, silently wrong, tracebacks, memory and hangs, security.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from click.testing import CliRunner

from proseg_pyro.checkpoint import read_checkpoint
from proseg_pyro.cli.main import cli
from proseg_pyro.limits import BUDGET_VARIABLE
from proseg_pyro.outputs import folder_lock

from .helpers import Exploit, one_thread  # noqa: F401  (one_thread: a fixture)
from .test_reliability_cli import Workspace, space, template  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Expect:
    """What a case must end in: the Error line names ``name``; ``kept`` files keep their bytes;
    ``budget`` (bytes) is the memory budget the command runs under."""

    name: str
    kept: list[Path] = field(default_factory=list)
    budget: int | None = None


CASES: dict[str, tuple[str, Callable[[Workspace], tuple[list[str], Expect]]]] = {}


def case(kind: str) -> Callable:
    def register(build: Callable[[Workspace], tuple[list[str], Expect]]) -> Callable:
        CASES[build.__name__] = (kind, build)
        return build
    return register


def _write(path: Path, array: np.ndarray) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def _use_image(ws: Workspace, name: str) -> None:
    ws.edit_manifest(lambda values: values["cases"][0].update(image=name))


def _sample(ws: Workspace, *extra: str) -> list[str]:
    return ["sample", str(ws.checkpoint), "--image", str(ws.case_file()), "--device", "cpu", "--samples", "2", *extra]


# --- lost data ----------------------------------------------------------------------------------
@case("lost data")
def train_into_an_existing_run(ws):
    argv = ws.train()
    argv[argv.index("--out") + 1] = str(ws.run)
    return argv, Expect("already holds a run", [ws.run / name for name in ("best.pt", "last.pt", "log.csv")])


@case("lost data")
def resume_from_an_empty_folder(ws):
    (ws.root / "typo").mkdir()
    argv = ws.train("--resume")
    argv[argv.index("--out") + 1] = str(ws.root / "typo")
    return argv, Expect("nothing to resume")


@case("lost data")
def a_second_writer_of_one_run(ws):
    lock = folder_lock(ws.root / "busy")
    lock.__enter__()  # released when the generator is collected; the test's copy is discarded anyway
    ws.held_lock = lock
    argv = ws.train()
    argv[argv.index("--out") + 1] = str(ws.root / "busy")
    return argv, Expect("another process")


@case("lost data")
def synth_over_a_hand_made_manifest(ws):
    return ["synth", "--out", str(ws.data.parent), "--num-images", "2", "--image-size", "16"], Expect(
        "manifest.json", [ws.data])


@case("lost data")
def compare_over_an_edited_table(ws):
    table = ws.root / "compare" / "comparison.md"
    table.parent.mkdir()
    table.write_text("| my edits |\n")
    return ws.compare(), Expect("comparison.md", [table])


@case("lost data")
def bench_over_earlier_results(ws):
    (ws.root / "bench.json").write_text("{}")
    return ["bench", "--json", str(ws.root / "bench.json"), "--repeats", "1"], Expect(
        "bench.json", [ws.root / "bench.json"])


@case("lost data")
def figures_over_earlier_figures(ws):
    (ws.root / "figs").mkdir()
    (ws.root / "figs" / "samples.png").write_bytes(b"mine")
    return ["figures", str(ws.checkpoint), "--data", str(ws.data), "--out", str(ws.root / "figs"),
            "--device", "cpu"], Expect("samples.png", [ws.root / "figs" / "samples.png"])


# --- silently wrong -----------------------------------------------------------------------------
@case("silently wrong")
def nan_voxel_in_a_nifti(ws):
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(ws.case_file())))
    array[0, 2, 3] = np.nan
    _use_image(ws, _write(ws.data.parent / "nan.nii.gz", array).name)  # SimpleITK reads NIfTI NaN as 0
    return ws.train(), Expect("nan.nii.gz")


@case("silently wrong")
def complex_pixels(ws):
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(ws.case_file())))
    _use_image(ws, _write(ws.data.parent / "complex.nii", (array + 1j * array).astype(np.complex64)).name)
    return ws.train(), Expect("complex.nii")


@case("silently wrong")
def nan_in_an_annotation(ws):
    file = ws.case_file(ws.first_rater())
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(file))).astype(np.float32)
    labels[0, 0, 0] = np.nan
    _write(file, labels)
    return ws.train(), Expect(file.name)


@case("silently wrong")
def training_split_without_annotations(ws):
    def unannotate(values):
        for entry in values["cases"]:
            if entry.get("split") == "train":
                entry["annotations"] = {}
    ws.edit_manifest(unannotate)
    return ws.train(), Expect("holds no annotation")


@case("silently wrong")
def nan_lidc_masks(ws):
    masks = [np.full((8, 8), np.nan), np.ones((8, 8))]
    (ws.root / "lidc.pkl").write_bytes(pickle.dumps({"a": {"image": np.zeros((8, 8)), "masks": masks,
                                                           "series_uid": "s"}}))
    return ["train", "--data", str(ws.root / "lidc.pkl"), "--out", str(ws.root / "new"), "--device", "cpu"], \
        Expect("lidc.pkl")


@case("silently wrong")
def figures_of_data_with_other_raters(ws):
    ws.keep_first_raters(2)
    return ["figures", str(ws.checkpoint), "--data", str(ws.data), "--out", str(ws.root / "figs"),
            "--device", "cpu"], Expect("manifest.json")


@case("silently wrong")
def config_value_of_the_wrong_type(ws):
    ws.config.write_text(json.dumps({**json.loads(ws.config.read_text()), "lr": "0.01"}))
    return ws.train(), Expect("tiny.json")


@case("silently wrong")
def h5_with_nan_pixels(ws):
    (ws.root / "npc").mkdir()
    with h5py.File(ws.root / "npc" / "P001.h5", "w") as handle:
        for key in ("t1", "t1c", "t2"):
            handle[key] = np.full((8, 8), np.nan, np.float32)
    return ["train", "--data", str(ws.root / "npc"), "--out", str(ws.root / "new"), "--device", "cpu"], \
        Expect("P001.h5")


# --- tracebacks ---------------------------------------------------------------------------------
@case("traceback")
def symlink_loop_as_an_image(ws):
    (ws.data.parent / "loop.nii.gz").symlink_to("loop.nii.gz")
    _use_image(ws, "loop.nii.gz")
    return ws.train(), Expect("loop.nii.gz")


@case("traceback")
def deeply_nested_manifest(ws):
    ws.data.write_text("[" * 100_000 + "]" * 100_000)
    return ws.train(), Expect("manifest.json")


@case("traceback")
def deeply_nested_config(ws):
    ws.config.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    return ws.train(), Expect("tiny.json")


@case("traceback")
def config_that_is_a_folder(ws):
    ws.config.unlink()
    ws.config.mkdir()
    return ws.train(), Expect("tiny.json")


@case("traceback")
def config_not_utf8(ws):
    ws.config.write_bytes(b'{"lr": "\xff\xfe"}')
    return ws.train(), Expect("tiny.json")


@case("traceback")
def seed_out_of_range(ws):
    return ws.train("--seed", str(2 ** 64)), Expect("--seed")


@case("traceback")
def even_predictor_kernel(ws):
    ws.config.write_text(json.dumps({**json.loads(ws.config.read_text()), "predictor_kernel": 2}))
    return ws.train(), Expect("predictor_kernel")


@case("traceback")
def infinite_learning_rate(ws):
    return ws.train("--lr", "inf"), Expect("lr")


@case("traceback")
def tiny_alpha0(ws):
    ws.config.write_text(json.dumps({**json.loads(ws.config.read_text()), "alpha0": 1e-300}))
    return ws.train(), Expect("alpha0")


@case("traceback")
def device_mps(ws):
    return ws.evaluate()[:-2] + ["--device", "mps"], Expect("--device mps")


@case("traceback")
def device_meta(ws):
    return ws.train("--device", "meta"), Expect("--device meta")


@case("traceback")
def sample_into_a_folder_under_a_file(ws):
    (ws.root / "file").write_text("x")
    return _sample(ws, "--out", str(ws.root / "file" / "out")), Expect("file")


@case("traceback")
def output_name_too_long(ws):
    return ws.evaluate("--json", str(ws.root / ("x" * 300 + ".json"))), Expect("xxxx")


@case("traceback")
def enrol_data_with_other_channels(ws):
    ws.edit_manifest(lambda values: [entry.update(image=[entry["image"]] * 2) for entry in values["cases"]])
    return ["enrol", str(ws.checkpoint), "--data", str(ws.data), "--rater", "newcomer", "--out",
            str(ws.root / "new.pt"), "--device", "cpu"], Expect("manifest.json")


@case("traceback")
def nan_weights_in_a_checkpoint(ws):
    model = read_checkpoint(ws.checkpoint)["model"]
    name = next(key for key, value in model.items() if value.is_floating_point())
    ws.edit_checkpoint(model={**model, name: torch.full_like(model[name], float("nan"))})
    return ws.evaluate(), Expect("last.pt")


# --- memory and hangs ---------------------------------------------------------------------------
@case("memory")
def nifti_header_of_a_huge_image(ws):
    path = _write(ws.data.parent / "huge.nii", np.zeros((2, 4, 4), np.float32))
    header = bytearray(path.read_bytes())
    header[40:48] = struct.pack("<4h", 3, 4000, 4000, 4000)  # dim[0..3]: 64e9 voxels claimed
    path.write_bytes(bytes(header))
    _use_image(ws, "huge.nii")
    return ws.train(), Expect("huge.nii", budget=64 << 20)


@case("memory")
def h5_of_fill_value_datasets(ws):
    (ws.root / "npc").mkdir()
    with h5py.File(ws.root / "npc" / "P001.h5", "w") as handle:
        for key in ("t1", "t1c", "t2"):
            handle.create_dataset(key, shape=(2000, 2000, 500), dtype=np.float32, chunks=(1, 100, 100))
    assert (ws.root / "npc" / "P001.h5").stat().st_size < 100_000
    return ["train", "--data", str(ws.root / "npc"), "--out", str(ws.root / "new"), "--device", "cpu"], \
        Expect("P001.h5", budget=64 << 20)


@case("memory")
def checkpoint_archive_that_inflates(ws):
    with zipfile.ZipFile(ws.checkpoint, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("last/data.pkl", b"\0" * (8 << 20))
    assert ws.checkpoint.stat().st_size < 100_000
    return ws.evaluate(), Expect("last.pt", budget=4 << 20)


@case("memory")
def tall_volume_of_single_pixels(ws):
    _use_image(ws, _write(ws.data.parent / "tall.mha", np.zeros((20_000, 1, 1), np.float32)).name)
    ws.edit_manifest(lambda values: values["cases"][0].update(annotations={}))
    return ws.train(), Expect("manifest.json", budget=64 << 20)


@case("memory")
def a_billion_samples(ws):
    return (_sample(ws, "--out", str(ws.root / "out"), "--prior") + ["--samples", str(10 ** 9)],
            Expect("--samples", budget=64 << 20))


@case("memory")
def evaluate_with_a_billion_samples(ws):
    return ws.evaluate("--samples", str(10 ** 9)), Expect("--samples")


@case("memory")
def fifo_as_an_image(ws):
    os.mkfifo(ws.data.parent / "fifo.nii.gz")
    _use_image(ws, "fifo.nii.gz")
    return ws.train(), Expect("fifo.nii.gz")


# --- security -----------------------------------------------------------------------------------
@case("security")
def manifest_image_at_the_root(ws):
    _use_image(ws, "/")
    return ws.train(), Expect("manifest.json")


@case("security")
def manifest_path_out_of_the_folder(ws):
    (ws.root / "secret.nii.gz").write_bytes(ws.case_file().read_bytes())
    _use_image(ws, "../secret.nii.gz")
    return ws.train(), Expect("outside the dataset folder")


@case("security")
def symlinked_cache_folder(ws):
    (ws.root / "elsewhere").mkdir()
    (ws.root / "elsewhere" / "keep.npz").write_bytes(b"mine")
    (ws.root / "cache").symlink_to(ws.root / "elsewhere")
    return ws.train("--cache-dir", str(ws.root / "cache")), Expect("cache", [ws.root / "elsewhere" / "keep.npz"])


@case("security")
def h5_external_link(ws):
    (ws.root / "npc").mkdir()
    with h5py.File(ws.root / "outside.h5", "w") as handle:
        handle["t1"] = np.zeros((8, 8), np.float32)
    with h5py.File(ws.root / "npc" / "P001.h5", "w") as handle:
        handle["t1"] = h5py.ExternalLink(str(ws.root / "outside.h5"), "t1")
        handle["t1c"] = handle["t2"] = np.zeros((8, 8), np.float32)
    return ["train", "--data", str(ws.root / "npc"), "--out", str(ws.root / "new"), "--device", "cpu"], \
        Expect("P001.h5")


@case("security")
def checkpoint_with_planted_code(ws):
    torch.save({"format": "proseg-pyro/1", "model": Exploit(ws.marker)}, ws.checkpoint)
    return ws.evaluate(), Expect("refused type")


@pytest.mark.parametrize("kind, build", CASES.values(), ids=CASES.keys())
def test_hostile_input_gives_one_error_line_and_keeps_earlier_outputs(space, monkeypatch, kind, build):
    argv, expect = build(space)
    kept = {path: path.read_bytes() for path in expect.kept}
    if expect.budget is not None:
        monkeypatch.setenv(BUDGET_VARIABLE, str(expect.budget))
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and expect.name in errors[0], result.stderr
    assert "Traceback" not in result.output and "weights_only" not in result.output
    assert {path: path.read_bytes() for path in kept} == kept
    assert not space.marker.exists()
    assert not list(space.root.rglob(".partial-*"))


# --- correct outputs where a run is continued or replaced on purpose ------------------------------
def test_force_replaces_a_run_and_resume_continues_it(space):
    argv = space.train("--force")
    argv[argv.index("--out") + 1] = str(space.run)
    (space.run / "log.csv").write_text("epoch,train_loss,val_loss,seconds\n0,1,1,1\n1,1,1,1\n")
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    replaced = (space.run / "log.csv").read_text().splitlines()
    assert len(replaced) == 2 and replaced[1].startswith("1,")  # a header and the new run's validation at step 1
    resumed = CliRunner().invoke(cli, space.train("--resume", "--steps", "4"), catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    log = (space.run / "log.csv").read_text().splitlines()
    # validations every 3 steps and at the last: steps 2 and 3
    assert len(log) == 4 and log[:2] == replaced and log[2].startswith("2,") and log[3].startswith("3,")


# --- the last-resort boundary, for every command --------------------------------------------------
FAILURES = {"OSError": OSError(28, "No space left on device", "/data/out.nii.gz"),
            "RecursionError": RecursionError("maximum recursion depth exceeded"),
            "UnicodeDecodeError": UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
            "MemoryError": MemoryError(),
            "allocator": RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                                      "memory: you tried to allocate 9000000000000 bytes."),
            "cuda allocator": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")}
ARGUMENTS = {"sample": ["ckpt", "--image", "scan", "--out", "out"], "enrol": ["ckpt", "--rater", "r", "--out", "o"],
             "identify": ["ckpt", "--image", "scan", "--annotation", "mask"], "evaluate": ["ckpt"],
             "figures": ["ckpt", "--out", "figs"], "synth": ["--out", "data"],
             "predict": ["ckpt", "-i", "scans", "-o", "results"]}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_no_command_prints_a_traceback_for_the_classes_of_failure_no_check_foresaw(monkeypatch, failure):
    context = cli.make_context("proseg-pyro", ["--help"], resilient_parsing=True)
    for name in cli.list_commands(context):
        command = cli.get_command(context, name)

        def fail(*args, **kwargs):
            raise failure

        monkeypatch.setattr(command, "callback", fail)
        result = CliRunner().invoke(cli, [name, *ARGUMENTS.get(name, [])], catch_exceptions=False)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), (name, result.output)
    if isinstance(failure, OSError):
        assert lines == ["Error: /data/out.nii.gz: No space left on device"]


def test_a_bug_still_shows_its_traceback(monkeypatch):
    context = cli.make_context("proseg-pyro", ["--help"], resilient_parsing=True)
    command = cli.get_command(context, "evaluate")
    monkeypatch.setattr(command, "callback", lambda *args, **kwargs: {}["missing"])
    with pytest.raises(KeyError):
        CliRunner().invoke(cli, ["evaluate", "ckpt"], catch_exceptions=False)


def test_every_class_has_a_case():
    assert {kind for kind, _ in CASES.values()} == {"lost data", "silently wrong", "traceback", "memory", "security"}

