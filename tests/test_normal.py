"""Normal noise drawn in blocks on a thread pool (N(0, 1), independent blocks, seeded by torch), and the
lean Normal: torch's values and gradients, reparameterised draws."""
from __future__ import annotations

import torch

from proseg_pyro.normal import BLOCK, FusedNormal, standard_normal_

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


def test_fused_normal_has_torch_values_and_gradients():
    loc = torch.randn(3, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(3, 1, 4, 5, dtype=torch.float64).add(0.1).requires_grad_()
    value = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    shape = value.shape
    fused = FusedNormal(loc, scale).expand(shape).log_prob(value)
    plain = torch.distributions.Normal(loc.expand(shape), scale.expand(shape)).log_prob(value)
    assert torch.equal(fused, plain)
    weights = torch.randn(shape, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad((fused * weights).sum(), (value, loc, scale)),
                         torch.autograd.grad((plain * weights).sum(), (value, loc, scale))):
        torch.testing.assert_close(got, want)


def test_fused_normal_rsample_is_reparameterised_with_the_right_moments():
    loc = torch.tensor([[-3.0], [2.0]], requires_grad=True)
    scale = torch.tensor([[0.5], [4.0]], requires_grad=True)
    torch.manual_seed(0)
    draws = FusedNormal(loc, scale).expand((2, 2 ** 21)).rsample((2,))  # over two noise blocks
    assert draws.shape == (2, 2, 2 ** 21)
    torch.testing.assert_close(draws.mean((0, 2)), torch.tensor([-3.0, 2.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(draws.std((0, 2)), torch.tensor([0.5, 4.0]), atol=0.01, rtol=0)
    grad_loc, grad_scale = torch.autograd.grad(draws.sum(), (loc, scale))
    torch.testing.assert_close(grad_loc, torch.full((2, 1), 2.0 ** 22))  # d z / d loc = 1 for each of 2 x 2^21 draws
    noise = (draws.detach() - loc.detach()[None]) / scale.detach()[None]  # d z / d scale = eps
    torch.testing.assert_close(grad_scale, noise.sum((0, 2))[:, None], rtol=1e-4, atol=1.0)
    torch.manual_seed(0)
    sampled = FusedNormal(loc, scale).expand((2, 2 ** 21)).sample((2,))
    assert not sampled.requires_grad and torch.equal(sampled, draws.detach())
