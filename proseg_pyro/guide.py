"""The amortised ProSeg guide: q(z_i | x) from a U-Net, q(tau_i | r_i) from a learned rater embedding."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from .config import ProSegConfig
from .normal import FusedNormal
from .networks import GaussianHeads, make_backbone
from .tau_families import TAU_FAMILIES

pyro.settings.set(module_local_params=True)


# --- the guide's parts: each guide composes those of the latents it has ----------------------------
class PreferencePosterior:
    """q(tau | r) of the config's tau family, from learned per-rater parameters (a row per rater
    slot), for a module holding ``config``; :meth:`add_tau_parameters` creates them."""

    config: ProSegConfig
    tau_parameter_names: tuple[str, ...]

    def add_tau_parameters(self, slots: int) -> None:
        """The tau family's variational parameters for ``slots`` rater slots, under the family's names."""
        initial = TAU_FAMILIES[self.config.tau_prior].initial_parameters(self.config, slots)
        for name, value in initial.items():
            setattr(self, name, nn.Parameter(value))
        self.tau_parameter_names = tuple(initial)

    def rater_parameters(self) -> list[nn.Parameter]:
        """The per-rater variational parameters of q(tau | r) (training takes them at a higher rate)."""
        return [getattr(self, name) for name in self.tau_parameter_names]

    def tau_dist(self, raters: torch.Tensor) -> dist.Distribution:
        """q(tau | r): ``raters`` (N,) long, training or enrolled slots -> batch (N,), event (T,)."""
        rows = {name: getattr(self, name)[raters] for name in self.tau_parameter_names}
        return TAU_FAMILIES[self.config.tau_prior].posterior(rows, self.config)


class AmbiguityPosterior:
    """q(z | x) from a U-Net backbone and Gaussian heads, for a module holding ``config``,
    ``backbone`` and ``z_heads`` (:func:`ambiguity_networks` makes the pair)."""

    config: ProSegConfig
    backbone: nn.Module
    z_heads: GaussianHeads

    def z_dist(self, x: torch.Tensor, raters: torch.Tensor | None = None) -> dist.Distribution:
        """q(z | x): ``x`` (..., C, H, W) -> batch (..., 1) for a shared head, (..., N) for per-rater
        heads ``raters`` (N,) (all R when None); event (Cz, H, W)."""
        loc, scale = self.z_heads(self.backbone(x))
        if raters is not None and self.z_heads.heads > 1:
            loc, scale = loc[..., raters, :, :, :], scale[..., raters, :, :, :]
        return FusedNormal(loc, scale).to_event(3)


def ambiguity_networks(config: ProSegConfig) -> tuple[nn.Module, GaussianHeads]:
    """The backbone (activations recomputed in the backward pass: identical gradients, about 200 MB
    off a training step's peak at paper size for ~10% more compute) and the ``z`` heads, one shared
    or, as ``config.z_head`` says, one per rater slot (training raters, then enrolled ones)."""
    c = config
    backbone = make_backbone(c, c.feature_channels, checkpoint=True)
    slots = c.num_raters + len(c.enrolled_raters)
    return backbone, GaussianHeads(c.feature_channels, c.z_channels, 1 if c.z_head == "shared" else slots,
                                   slices_of=c.num_raters if c.z_head == "per_rater_sliced" else None)


class ProSegGuide(PreferencePosterior, AmbiguityPosterior, PyroModule):
    """q(tau, z | x, r) = prod_{b,i} q(tau_bi | r = i) q(z_bi | x_b, r = i).

    * ``q(tau | r = i)``: the config's tau family (:mod:`proseg_pyro.tau_families`): for the
      Dirichlet, Dirichlet(softplus(e_i) + floor), ``e_i`` a learned (T,) embedding of rater ``i``
      (logistic-normal with a learned loc/scale for ``"logistic_normal"``, so prior and posterior
      share a family). The embedding has a row for each of the R training raters and then one per
      ``config.enrolled_raters`` (added after training by :mod:`proseg_pyro.enrol`); ``forward``,
      and so the training ELBO, uses the first R only.
    * ``q(z_i | x)``: Normal(loc(x), scale(x)) per pixel from a U-Net backbone and a 1x1 head. With
      ``z_head="per_rater_sliced"`` (default) rater slot ``i`` has its own head reading only its
      slice of the backbone's features, so a style reaches the annotation through ``tau`` and
      through where the rater's ``z`` puts the boundary; ``"shared"`` gives all raters one head, so
      that a style can only reach the annotation through ``tau``; ``"per_rater"`` gives each slot
      its own head reading every feature, as the released code.
    """

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config
        self.backbone, self.z_heads = ambiguity_networks(config)
        self.add_tau_parameters(config.num_raters + len(config.enrolled_raters))

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
                pyro.sample("z", self.z_dist(x, rater_ids))
