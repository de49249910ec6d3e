"""Standard normal noise drawn on all CPU cores.

torch fills a CPU tensor with normals from one Mersenne-Twister stream on one core, whatever
``torch.get_num_threads()`` says, and sampling a latent map takes millions of them per sample (at
128x128 the draws were over half of personalised sampling's time). :func:`standard_normal_` fills
fixed-size blocks from independent generators, seeded by one draw from torch's default generator,
on a thread pool: the numbers depend on ``torch.manual_seed`` only, not on the number of threads.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch

BLOCK = 2 ** 20  # normals per generator
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    # keyed by process too: a forked child inherits the pool object but not its threads
    key = (os.getpid(), threads)
    if key not in _POOLS:
        _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="proseg-noise")
    return _POOLS[key]


def _fill(block: torch.Tensor, seed: int) -> None:
    block.normal_(generator=torch.Generator().manual_seed(seed))


def standard_normal_(out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` (contiguous) with independent N(0, 1) draws, in place; returns ``out``.

    On a GPU (parallel already), or for fewer than two blocks, this is ``normal_()`` itself.
    """
    threads = torch.get_num_threads()
    if out.device.type != "cpu" or out.numel() < 2 * BLOCK or threads < 2:
        return out.normal_()
    blocks = out.view(-1).split(BLOCK)
    seeds = torch.randint(2 ** 62, (len(blocks),)).tolist()
    list(_pool(threads).map(_fill, blocks, seeds))
    return out
