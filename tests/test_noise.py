"""Normal noise drawn in blocks on a thread pool: N(0, 1), independent blocks, seeded by torch."""
from __future__ import annotations

import torch

from proseg_pyro.noise import BLOCK, standard_normal_

SHAPE = (3, BLOCK + 7)  # three and a bit blocks


def test_draws_depend_on_the_seed_only_not_on_the_threads():
    threads = torch.get_num_threads()
    draws = []
    try:
        for count in (2, 3, 2):
            torch.set_num_threads(count)
            torch.manual_seed(4)
            draws.append(standard_normal_(torch.empty(SHAPE)))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])
    torch.manual_seed(5)
    torch.set_num_threads(2)
    try:
        assert not torch.equal(standard_normal_(torch.empty(SHAPE)), draws[0])
    finally:
        torch.set_num_threads(threads)


def test_blocks_are_independent_standard_normals():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        noise = standard_normal_(torch.empty(SHAPE, dtype=torch.float64))
    finally:
        torch.set_num_threads(threads)
    assert noise.dtype == torch.float64 and noise.shape == SHAPE
    flat = noise.flatten()
    # mean and variance within ~5 standard errors of N(0, 1) over 3.1M draws
    assert abs(flat.mean().item()) < 5 / flat.numel() ** 0.5
    assert abs(flat.var().item() - 1) < 5 * (2 / flat.numel()) ** 0.5
    blocks = flat[:3 * BLOCK].view(3, BLOCK)
    correlation = torch.corrcoef(blocks)
    assert (correlation - torch.eye(3)).abs().max() < 5 / BLOCK ** 0.5  # distinct streams, not copies


def test_small_draws_are_torch_normal():
    torch.manual_seed(1)
    small = standard_normal_(torch.empty(4, 5))
    torch.manual_seed(1)
    assert torch.equal(small, torch.empty(4, 5).normal_())
