"""Data-parallel training: process groups, sharding of each global batch, shard-invariant noise.

``torchrun --nproc_per_node N`` (or ``proseg-pyro train --ddp``) starts one process per rank; each
takes ``batch[rank::N]`` of every global batch and the gradients are averaged by
``DistributedDataParallel``. For the result to equal one process's, the randomness must not
depend on how a batch is split: :class:`ImageNoise` draws every latent sample of image ``b`` from
a seed of its own (its position in the epoch), and augmentation is drawn for the global batch by
every rank from the same generator.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from pyro.poutine.messenger import Messenger

IMAGES_PLATE = "images"


@dataclass(frozen=True)
class Rank:
    """This process's place in a data-parallel run (rank 0 of 1 without one); ``grouped``: in a
    process group (even one of a single rank)."""

    rank: int = 0
    world_size: int = 1
    grouped: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, logs and progress."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def shard(self, items: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch ``items`` (N, ...): ``items[rank::world_size]``."""
        return items[self.rank::self.world_size]

    def sum(self, value: float, device: torch.device) -> float:
        """``value`` summed over all ranks (itself without a process group)."""
        if not self.parallel:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return float(total)


def current() -> Rank:
    """The rank of this process in the default process group (rank 0 of 1 when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return Rank(dist.get_rank(), dist.get_world_size(), grouped=True)
    return Rank()


def launched_by_torchrun() -> bool:
    """Whether the environment holds a torchrun rendezvous (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def environment_rank() -> int:
    """The rank torchrun gave this process (0 without torchrun), before any process group exists."""
    return int(os.environ.get("RANK", "0"))


def rank_device(device: torch.device | str) -> torch.device:
    """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK``, anything else is kept."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def setup(device: torch.device | str) -> Rank:
    """Join the process group that torchrun (or :func:`spawn`) describes in the environment.

    NCCL for CUDA, gloo otherwise; a CUDA rank is pinned to ``cuda:LOCAL_RANK``, a CPU rank takes
    its share of the machine's threads.
    """
    device = rank_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:  # the ranks on one machine share its cores
        torch.set_num_threads(max(1, torch.get_num_threads() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return current()


def teardown() -> None:
    """Leave the process group, if this process is in one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, function: Callable, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size))
    function(*args)


def spawn(function: Callable, world_size: int, *args) -> None:
    """Run ``function(*args)`` in ``world_size`` local processes with a torchrun-like environment
    (each then calls :func:`setup`); returns when all have finished, raises if one failed."""
    torch.multiprocessing.spawn(_worker, args=(world_size, _free_port(), function, args), nprocs=world_size)


def _seed(*key: int) -> int:
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0])


def _split(fn, dim: int) -> list:
    """``fn`` cut along its batch dim ``dim`` (negative) into distributions of the same family."""
    if isinstance(fn, torch.distributions.Independent):
        return [torch.distributions.Independent(part, fn.reinterpreted_batch_ndims)
                for part in _split(fn.base_dist, dim - fn.reinterpreted_batch_ndims)]
    offset = dim - len(fn.event_shape)
    params = {name: getattr(fn, name).unbind(offset) for name in fn.arg_constraints}
    return [type(fn)(**{name: values[index] for name, values in params.items()}, validate_args=False)
            for index in range(fn.batch_shape[dim])]


def _draw_per_seed(fn, dim: int, seeds: list[int]) -> torch.Tensor:
    """A sample of ``fn`` whose slice ``b`` along its batch dim ``dim`` is drawn from ``seeds[b]``:
    the numbers ``fn`` restricted to that slice would draw after ``torch.manual_seed(seeds[b])``."""
    value_dim = dim - len(fn.event_shape)
    base = fn.base_dist if isinstance(fn, torch.distributions.Independent) else fn
    if isinstance(base, torch.distributions.Normal):  # loc + eps * scale: one differentiable op over all
        shape = list(fn.shape())
        del shape[value_dim]
        noise = []
        for seed in seeds:
            torch.manual_seed(seed)
            noise.append(torch.empty(shape, dtype=base.loc.dtype, device=base.loc.device).normal_())
        return base.loc + torch.stack(noise, value_dim) * base.scale
    parts = []
    for seed, part in zip(seeds, _split(fn, dim)):
        torch.manual_seed(seed)
        parts.append(part.rsample() if fn.has_rsample else part.sample())
    return torch.stack(parts, value_dim)


class ImageNoise(Messenger):
    """Draws the latent sites image by image, each image from its own seed.

    ``positions`` (one per image of this batch, in order) identify the images, e.g. their places in
    the epoch's order; ``batch`` identifies the global batch. The ``k``-th latent site draws image
    ``b`` from seed ``(seed, stream, position_b, k)``, and a latent site outside the ``images``
    plate from ``(seed, stream, batch, k)``, so the samples of an image do not depend on the other
    images in its batch nor on how a batch is split between processes. Used around an ELBO call
    inside ``torch.random.fork_rng``.
    """

    def __init__(self, seed: int, stream: int, positions: list[int], batch: int):
        super().__init__()
        self.seed, self.stream, self.positions, self.batch = seed, stream, positions, batch
        self.sites = 0

    def _pyro_sample(self, msg) -> None:
        fn = msg["fn"]
        if msg["is_observed"] or msg["value"] is not None or not isinstance(fn, torch.distributions.Distribution):
            return  # observed, already drawn, or a plate's subsample indices
        site = self.sites
        self.sites += 1
        frames = [frame for frame in msg["cond_indep_stack"] if frame.name == IMAGES_PLATE]
        if not frames:
            torch.manual_seed(_seed(self.seed, self.stream, 1, self.batch, site))
            msg["value"] = fn.rsample() if fn.has_rsample else fn.sample()
            return
        seeds = [_seed(self.seed, self.stream, 0, position, site) for position in self.positions]
        msg["value"] = _draw_per_seed(fn, frames[0].dim, seeds)


def elbo_with_image_noise(elbo: nn.Module, batch: tuple[torch.Tensor, ...], positions: torch.Tensor,
                          noise: tuple[int, int, int]) -> torch.Tensor:
    """``elbo(*batch)`` with each image's latents drawn from its own seed (:class:`ImageNoise`).

    ``positions`` (N,) identify the images; ``noise`` is (seed, stream, global batch number). The
    global RNG state is left as it was.
    """
    device = batch[0].device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            ImageNoise(*noise[:2], positions.tolist(), noise[2]):
        return elbo(*batch)
