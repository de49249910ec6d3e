"""Nothing is lost: atomic writes, no silent overwrites, resuming after SIGKILL, stopping on NaN."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import proseg_pyro.cli.evaluate  # noqa: F401  (registers the command)
import proseg_pyro.train as train_module
from proseg_pyro.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from proseg_pyro.cli.main import cli
from proseg_pyro.data import load_dataset
from proseg_pyro.data.export import write_manifest_dataset
from proseg_pyro.data.synthetic import make_synthetic
from proseg_pyro.errors import CheckpointError
from proseg_pyro.io_utils import atomic_path
from proseg_pyro.train import TrainingError, fit

from .conftest import tiny_config
from .helpers import one_thread, same_weights  # noqa: F401  (one_thread: a fixture)

TRAIN_COMMAND = "import proseg_pyro.cli.train; from proseg_pyro.cli.main import cli; cli()"
pytestmark = pytest.mark.usefixtures("one_thread")


# --- atomic writes ----------------------------------------------------------------------------------
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "last.pt"
    save_checkpoint(target, method="proseg", config={}, model={}, guide={}, step=1)

    def crash(content, path):
        Path(path).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "save", crash)
        save_checkpoint(target, method="proseg", config={}, model={}, guide={}, step=2)
    assert read_checkpoint(target)["step"] == 1
    assert [path.name for path in tmp_path.iterdir()] == ["last.pt"]


def test_atomic_path_keeps_the_extension_for_format_sniffing_writers(tmp_path):
    with atomic_path(tmp_path / "mask.nii.gz") as tmp:
        assert tmp.endswith("mask.nii.gz") and Path(tmp).parent == tmp_path
        Path(tmp).write_text("x")
    assert (tmp_path / "mask.nii.gz").read_text() == "x"


def test_corrupt_dataset_cache_is_rebuilt(tmp_path):
    slices, _ = make_synthetic(num_images=6, image_size=16, seed=0)
    manifest = write_manifest_dataset(slices, tmp_path)
    config = tiny_config()
    first = load_dataset(manifest, config=config, cache_dir=tmp_path / "cache")
    images, annotations = np.array(first.images), np.array(first.annotations)  # in memory: its map is cut below
    (entry,) = (tmp_path / "cache").iterdir()
    cache = entry / "images.npy"
    cache.write_bytes(cache.read_bytes()[:200])  # as if the machine died while it was written in place
    again = load_dataset(manifest, config=config, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.images, images)
    np.testing.assert_array_equal(again.annotations, annotations)


# --- no silent overwrites ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tiny_set, tmp_path_factory) -> Path:
    slices, _ = tiny_set
    out = tmp_path_factory.mktemp("run")
    config = tiny_config(steps=2).fitted_to(slices)
    fit(config, slices.split("train"), slices.split("val"), out, progress=False)
    return out / "last.pt"


def test_evaluate_refuses_to_overwrite_without_force(checkpoint, tmp_path):
    table = tmp_path / "table.json"
    table.write_text("precious")
    argv = ["evaluate", str(checkpoint), "--samples", "4", "--device", "cpu", "--json", str(table)]
    refused = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert refused.exit_code == 2 and "--force" in refused.stderr and table.read_text() == "precious"
    forced = CliRunner().invoke(cli, [*argv, "--force", "--alpha-star", "0.5"], catch_exceptions=False)
    assert forced.exit_code == 0, forced.output
    written = json.loads(table.read_text())
    assert set(written["rows"]) == {"personalised", "prior"} and written["settings"]["alpha_star"] == 0.5


# --- a run killed with SIGKILL resumes to the unbroken result ---------------------------------------
NEVER_ENDS = 10_000  # steps of the run to kill: it cannot end before the kill, however busy the machine


def _train(data: Path, config: Path, out: Path, *extra: str) -> subprocess.Popen:
    """``proseg-pyro train`` in a fresh process (the train command alone, as the console script runs it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", TRAIN_COMMAND, "train", "--data", str(data), "--config", str(config),
            "--out", str(out), "--device", "cpu", *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            encoding="utf-8", errors="replace")  # progress bars print non-ASCII


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=900)  # generous: only a hung run should reach it
    assert process.returncode == 0, output


def _step_of(path: Path) -> int:
    """The step of the checkpoint at ``path``, -1 while it does not exist; fails if it is corrupt."""
    try:
        return read_checkpoint(path)["step"]
    except CheckpointError as err:
        if path.exists():
            raise AssertionError(f"{path} is corrupt: {err}") from None
        return -1


def test_sigkill_mid_run_then_resume_equals_an_unbroken_run(tmp_path):
    """Killed at whatever step it has reached once step 1 is saved, the run resumes (to a few steps
    past the kill) to the same weights and losses as a run never killed. The kill waits for the run's
    own progress, not for a time, so a busy machine changes only where it lands. (A constant rate:
    a longer budget then changes no step's computation.)"""
    slices, _ = make_synthetic(num_images=40, image_size=16, seed=0)
    data = write_manifest_dataset(slices, tmp_path / "data")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(steps=NEVER_ENDS, val_every=1, augment=True, lr_schedule="constant",
                                             warmup_steps=0).to_dict()))
    broken = _train(data, config, tmp_path / "broken")
    last = tmp_path / "broken" / "last.pt"
    try:
        while _step_of(last) < 1:  # every look at last.pt while it is being rewritten must load
            assert broken.poll() is None, broken.communicate()[0]
            time.sleep(0.005)
        broken.send_signal(signal.SIGKILL)
        assert broken.wait(timeout=900) == -signal.SIGKILL
    finally:
        broken.kill()
    steps = _step_of(last) + 3  # the resumed run goes on for two validations more
    unbroken = _train(data, config, tmp_path / "unbroken", "--steps", str(steps))
    _finish(_train(data, config, tmp_path / "broken", "--resume", "--steps", str(steps)))
    _finish(unbroken)
    resumed, reference = read_checkpoint(last), read_checkpoint(tmp_path / "unbroken" / "last.pt")
    assert resumed["step"] == reference["step"] == steps - 1
    assert same_weights(resumed, reference)
    losses = lambda content: [(row["train_loss"], row["val_loss"]) for row in content["history"]]  # noqa: E731
    assert losses(resumed) == losses(reference)


# --- a non-finite loss or gradient stops training and keeps the last good checkpoint ---------------
class _NanGradient(torch.autograd.Function):
    """The identity whose gradient is NaN: a finite loss that would poison the parameters."""

    @staticmethod
    def forward(ctx, loss: torch.Tensor) -> torch.Tensor:
        return loss.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("nan")


class _Poisoned(nn.Module):
    """The ELBO module whose loss goes through ``poison`` once ``armed``."""

    def __init__(self, elbo: nn.Module, poison: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.elbo, self.poison, self.armed = elbo, poison, False

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        loss = self.elbo(*args)
        return self.poison(loss) if self.armed else loss


POISONS = {"nan-loss": lambda loss: loss * float("nan"), "nan-gradient": _NanGradient.apply}


@pytest.mark.filterwarnings("ignore:Encountered NaN")
@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
def test_non_finite_training_stops_and_keeps_the_last_good_checkpoint(tiny_set, tmp_path, monkeypatch, poison):
    slices, _ = tiny_set
    train, val = slices.split("train"), slices.split("val")
    # A validation after every step: a poisoned step comes right before a checkpoint.
    config = tiny_config(steps=4, val_every=1).fitted_to(slices)
    build, poisoned = train_module.build, []

    def build_poisoned(*args, **kwargs):
        model, guide, elbo = build(*args, **kwargs)
        poisoned.append(_Poisoned(elbo, poison))
        return model, guide, poisoned[-1]

    def arm_after_first_step(row: dict) -> None:
        poisoned[-1].armed = True

    monkeypatch.setattr(train_module, "build", build_poisoned)
    with pytest.raises(TrainingError, match="at step 1; the last good checkpoint is kept") as error:
        fit(config, train, val, tmp_path, progress=False, on_validation=arm_after_first_step)
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)
    for name in ("best.pt", "last.pt"):
        assert read_checkpoint(tmp_path / name)["step"] == 0
        model, guide, _ = load_checkpoint(tmp_path / name)
        assert all(torch.isfinite(p).all() for p in [*model.parameters(), *guide.parameters()])
