"""The amortised ProSeg guide: q(z_i | x) from a U-Net, q(tau_i | r_i) from a learned rater embedding."""
from __future__ import annotations

import itertools

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from .config import ProSegConfig
from .normal import FusedNormal
from .networks import GaussianHeads, make_backbone

pyro.settings.set(module_local_params=True)


def _inverse_softplus(value: torch.Tensor) -> torch.Tensor:
    return value + torch.log(-torch.expm1(-value))


class ProSegGuide(PyroModule):
    """q(tau, z | x, r) = prod_{b,i} q(tau_bi | r = i) q(z_bi | x_b).

    * ``q(tau | r = i)``: Dirichlet(softplus(e_i) + floor), ``e_i`` a learned (T,) embedding of rater
      ``i`` (logistic-normal with a learned loc/scale when the config's ``tau_prior`` is
      ``"logistic_normal"``, so prior and posterior share a family). The embedding has a row for each
      of the R training raters and then one per ``config.enrolled_raters`` (added after training by
      :mod:`proseg_pyro.enrol`); ``forward``, and so the training ELBO, uses the first R only.
    * ``q(z | x)``: Normal(loc(x), scale(x)) per pixel from a U-Net backbone. With ``z_head="shared"``
      (default) one head serves all raters, so a rater's style can only reach the annotation
      through ``tau``; ``z_head="per_rater"`` gives each rater its own head, as the released code.
    """

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config
        c = config
        # Recomputing the backbone's activations in the backward pass (identical gradients) takes
        # about 200 MB off a training step's peak at paper size for ~10% more compute.
        self.backbone = make_backbone(c, c.feature_channels, checkpoint=True)
        self.z_heads = GaussianHeads(c.feature_channels, c.z_channels, c.num_raters if c.z_head == "per_rater" else 1)
        raters = c.num_raters + len(c.enrolled_raters)
        if c.tau_prior == "dirichlet":
            self.tau_concentration_raw = nn.Parameter(_inverse_softplus(self._initial_concentration(raters)))
        else:
            self.tau_loc = nn.Parameter(0.5 * torch.randn(raters, c.tau_dim - 1))
            self.tau_scale_raw = nn.Parameter(torch.full((raters, c.tau_dim - 1), _inverse_softplus(
                torch.tensor(0.5)).item()))

    def _initial_concentration(self, raters: int) -> torch.Tensor:
        """Each rater starts at ``c = config.tau_init_concentration`` on two entries of its own and
        ``c / 10`` elsewhere: (raters, T).

        Rater ``a`` < T/2 takes entries ``a`` and ``a + T/2`` (with c = 1 the released code's start
        for 4 raters), the next raters the other pairs of entries in order, so that no two of the first
        T (T - 1) / 2 raters start alike (with ``a`` and ``a + T/2`` mod T for all, 7 raters and
        T = 8 would start as 3 identical pairs and one more, and their styles stay merged)."""
        dim = self.config.tau_dim
        halves = [(a, a + dim // 2) for a in range(dim // 2)]
        pairs = halves + [pair for pair in itertools.combinations(range(dim), 2) if pair not in halves]
        own = self.config.tau_init_concentration
        start = torch.full((raters, dim), own / 10)
        for rater in range(raters):
            start[rater, list(pairs[rater % len(pairs)])] = own
        return start

    def rater_parameters(self) -> list[nn.Parameter]:
        """The per-rater variational parameters of q(tau | r) (training takes them at a higher rate)."""
        names = ("tau_concentration_raw", "tau_loc", "tau_scale_raw")
        return [parameter for name, parameter in self.named_parameters() if name in names]

    def tau_dist(self, raters: torch.Tensor) -> dist.Distribution:
        """q(tau | r): ``raters`` (N,) long, training or enrolled slots -> batch (N,), event (T,)."""
        if self.config.tau_prior == "dirichlet":
            concentration = F.softplus(self.tau_concentration_raw[raters]) + self.config.concentration_floor
            return dist.Dirichlet(concentration)
        scale = F.softplus(self.tau_scale_raw[raters]) + 1e-3
        return dist.LogisticNormal(self.tau_loc[raters], scale)

    def z_dist(self, x: torch.Tensor, raters: torch.Tensor | None = None) -> dist.Distribution:
        """q(z | x): ``x`` (..., C, H, W) -> batch (..., 1) for a shared head, (..., N) for per-rater
        heads ``raters`` (N,) (all R when None); event (Cz, H, W)."""
        loc, scale = self.z_heads(self.backbone(x))
        if raters is not None and self.z_heads.heads > 1:
            loc, scale = loc[..., raters, :, :, :], scale[..., raters, :, :, :]
        return FusedNormal(loc, scale).to_event(3)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        """Same signature and plates as the model; samples ``tau`` and ``z`` only."""
        c = self.config
        batch, raters = x.shape[0], c.num_raters
        if mask is None:
            mask = torch.ones(batch, raters, dtype=torch.bool, device=x.device)
        rater_ids = torch.arange(raters, device=x.device)
        with pyro.plate("images", batch, dim=-2), pyro.plate("raters", raters, dim=-1), poutine.mask(mask=mask):
            with poutine.scale(scale=c.beta_tau):
                pyro.sample("tau", self.tau_dist(rater_ids))
            with poutine.scale(scale=c.beta_z / (x.shape[-2] * x.shape[-1])):  # per pixel, as the model
                pyro.sample("z", self.z_dist(x))
