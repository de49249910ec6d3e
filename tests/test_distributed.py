"""Data-parallel training (2 CPU processes on gloo) ends where one process ends on the same global batches."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from pyro import poutine

import proseg_pyro.cli.train  # noqa: F401  (registers the command)
from proseg_pyro import distributed
from proseg_pyro.checkpoint import read_checkpoint
from proseg_pyro.cli.main import cli
from proseg_pyro.config import ProSegConfig
from proseg_pyro.data.slices import SliceSet
from proseg_pyro.train import build, fit

from .conftest import tiny_config


def _train_rank(config: ProSegConfig, train: SliceSet, val: SliceSet, out: Path) -> None:
    torch.set_num_threads(1)
    rank = distributed.setup("cpu")
    try:
        assert rank.world_size == 2
        fit(config, train, val, out, progress=False)
    finally:
        distributed.teardown()


@pytest.fixture(scope="module")
def runs(tiny_set, tmp_path_factory):
    """last.pt of one process and of two, on 13 training slices in batches of 3 (the ranks' shards
    differ in size), with augmentation and two validations.

    The gradients agree to float summation order (~1e-6 relative); Adam turns such differences in
    near-zero gradients into steps of up to ``lr``, so the run uses the paper's lr 1e-4.
    """
    slices, _ = tiny_set
    train, val = slices.split("train").select(range(13)), slices.split("val")
    config = tiny_config(steps=4, val_every=2, batch_size=3, lr=1e-4, augment=True).fitted_to(slices)
    single, parallel = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("ddp")
    fit(config, train, val, single, progress=False)
    distributed.spawn(_train_rank, 2, config, train, val, parallel)
    return read_checkpoint(single / "last.pt"), read_checkpoint(parallel / "last.pt")


def test_two_processes_end_with_the_parameters_of_one(runs):
    single, parallel = runs
    assert parallel["step"] == single["step"] == 3
    for part in ("model", "guide"):
        assert parallel[part].keys() == single[part].keys()
        for name, value in single[part].items():
            torch.testing.assert_close(parallel[part][name], value, rtol=1e-5, atol=1e-5, msg=f"{part}.{name}")


def test_two_processes_log_the_losses_of_one(runs):
    single, parallel = runs
    for key in ("train_loss", "val_loss"):
        torch.testing.assert_close(torch.tensor([row[key] for row in parallel["history"]], dtype=torch.float64),
                                   torch.tensor([row[key] for row in single["history"]], dtype=torch.float64),
                                   rtol=1e-5, atol=0)


def test_a_global_batch_is_split_by_rank():
    batch = torch.arange(7)
    shards = [distributed.Rank(rank, 3).shard(batch) for rank in range(3)]
    assert [s.tolist() for s in shards] == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(torch.cat(shards).tolist()) == batch.tolist()


def test_image_noise_draws_each_image_alike_in_any_batch():
    """An image's latent samples depend on its position, not on the batch around it."""
    _, guide, _ = build(tiny_config(tau_prior="logistic_normal"))
    x = torch.randn(5, 1, 16, 16)

    def samples(index: list[int]) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng(), distributed.ImageNoise(0, 1, index, 0):
            trace = poutine.trace(guide).get_trace(x[index])
        return {name: trace.nodes[name]["value"] for name in ("tau", "z")}

    whole, odd, even = samples([0, 1, 2, 3, 4]), samples([1, 3]), samples([0, 2, 4])
    for name in ("tau", "z"):
        assert torch.equal(whole[name][1::2], odd[name]) and torch.equal(whole[name][0::2], even[name])


def test_train_command_with_ddp_starts_local_ranks(tmp_path):
    argv = ["train", "--ddp", "--nproc", "2", "--steps", "2", "--image-size", "16", "--device", "cpu",
            "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("best step 1") == 1
    assert read_checkpoint(tmp_path / "last.pt")["step"] == 1


def _train_one_rank(config: ProSegConfig, train: SliceSet, out: Path) -> None:
    torch.set_num_threads(1)
    distributed.setup("cpu")
    try:
        fit(config, train, None, out, progress=False)
    finally:
        distributed.teardown()


def test_a_group_of_one_rank_trains_like_no_group(tiny_set, tmp_path):
    """DDP over a single rank (as on a one-GPU machine) changes nothing."""
    slices, _ = tiny_set
    config = tiny_config(steps=2, batch_size=4).fitted_to(slices)
    train = slices.split("train").select(range(8))
    fit(config, train, None, tmp_path / "plain", progress=False)
    distributed.spawn(_train_one_rank, 1, config, train, tmp_path / "group")
    plain, group = read_checkpoint(tmp_path / "plain" / "last.pt"), read_checkpoint(tmp_path / "group" / "last.pt")
    for part in ("model", "guide"):
        for name, value in plain[part].items():
            torch.testing.assert_close(group[part][name], value, rtol=1e-5, atol=1e-5)
