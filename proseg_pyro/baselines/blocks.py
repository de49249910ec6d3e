"""Network blocks the compared methods need beyond :mod:`proseg_pyro.networks` (which they reuse)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..networks import ConvBlock, run_flat


class ConvEncoder(nn.Module):
    """Image to vector: (..., C, H, W) -> (..., out_features).

    ``ConvBlock`` levels of widths ``base * 2**level`` with ``depth`` average poolings, a spatial mean
    and a linear map (the prior/posterior nets of Kohl et al. 2018, the projection heads of D-Persona).
    """

    def __init__(self, in_channels: int, out_features: int, base: int, depth: int):
        super().__init__()
        widths = [base * 2 ** level for level in range(depth + 1)]
        layers: list[nn.Module] = [ConvBlock(in_channels, widths[0])]
        for level in range(depth):
            layers += [nn.AvgPool2d(2), ConvBlock(widths[level], widths[level + 1])]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(widths[-1], out_features)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x).mean((-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_flat(self._forward, x)


class GaussianEncoder(ConvEncoder):
    """Image to a diagonal Gaussian over a global latent: (..., C, H, W) -> loc, scale (..., D)."""

    def __init__(self, in_channels: int, latent_dim: int, base: int, depth: int):
        super().__init__(in_channels, 2 * latent_dim, base, depth)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw_scale = super().forward(x).chunk(2, dim=-1)
        return loc, F.softplus(raw_scale) + 1e-3
