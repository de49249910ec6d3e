"""Normal distributions for the latent maps: draws on all CPU cores and lean log-densities.

**Draws.** Standard normal noise drawn on all CPU cores.

torch fills a CPU tensor with normals from one Mersenne-Twister stream on one core, whatever
``torch.get_num_threads()`` says, and sampling a latent map takes millions of them per sample (at
128x128 the draws were over half of personalised sampling's time). :func:`standard_normal_` fills
fixed-size blocks from independent generators, seeded by one draw from torch's default generator,
on a thread pool: the numbers depend on ``torch.manual_seed`` only, not on the number of threads.

**Densities.** A Normal distribution with Pyro's samples and log-densities and a lean autograd footprint.

``torch.distributions.Normal.log_prob`` computes ``-(v - loc)**2 / (2 scale**2) - log(scale) - c``
as a chain of autograd ops over the broadcast shape, so for ProSeg's latent map (B, R, Cz, H, W),
whose ``loc``/``scale`` are (B, 1, Cz, H, W) or scalars expanded by the plates, it computes
``scale**2`` and ``log(scale)`` R times over and keeps about five map-sized tensors for the
backward pass. :func:`normal_log_prob` computes the same values (the same operations in the same
order, on the unexpanded parameters) and keeps only its inputs, deriving the gradients in closed
form. The ProSeg ELBO's ``z`` terms are most of a training step's elementwise work and memory.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import pyro.distributions as dist
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

_HALF_LOG_TWO_PI = math.log(math.sqrt(2 * math.pi))


def unexpanded(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` without the repetition of its expanded (stride-0) dims: those become size 1 (a view)."""
    for dim, (size, stride) in enumerate(zip(tensor.shape, tensor.stride())):
        if stride == 0 and size > 1:
            tensor = tensor.narrow(dim, 0, 1)
    return tensor


class _NormalLogProb(torch.autograd.Function):
    """log N(value; loc, scale) elementwise over the broadcast shape, saving only the inputs."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # densities in float32 under autocast
    def forward(ctx, value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(value, loc, scale)
        out = value - loc
        return out.pow_(2).neg_().div_(2 * scale ** 2).sub_(scale.log()).sub_(_HALF_LOG_TWO_PI)

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad: torch.Tensor):
        value, loc, scale = ctx.saved_tensors
        need_value, need_loc, need_scale = ctx.needs_input_grad
        residual = value - loc
        ratio = residual / scale ** 2  # (v - loc) / scale^2 = d log p / d loc = -d log p / d v
        grad_scale = None
        if need_scale:  # d log p / d scale = ((v - loc)^2 / scale^2 - 1) / scale
            grad_scale = residual.mul_(ratio).sub_(1).mul_(grad).sum_to_size(scale.shape).div_(scale)
        del residual
        ratio.mul_(grad)
        grad_loc = _sum_to(ratio, loc) if need_loc else None
        grad_value = None
        if need_value:
            grad_value = _sum_to(ratio, value)
            grad_value = grad_value.neg() if grad_value is grad_loc else grad_value.neg_()
        return grad_value, grad_loc, grad_scale


def _sum_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return grad.sum_to_size(like.shape) if grad.shape != like.shape else grad


def normal_log_prob(value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(value; loc, scale) over the broadcast shape, as ``torch.distributions.Normal``."""
    return _NormalLogProb.apply(value, unexpanded(loc), unexpanded(scale))


class FusedNormal(dist.Normal):
    """``pyro.distributions.Normal`` whose ``log_prob`` is :func:`normal_log_prob` (same values) and
    whose draws take their noise from all CPU cores (:func:`standard_normal_`),
    scaled in one pass."""

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        noise = standard_normal_(self.loc.new_empty(self._extended_shape(sample_shape)))
        return torch.addcmul(self.loc, noise, self.scale)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return normal_log_prob(value, self.loc, self.scale)
