"""The ProSeg ELBO written out in plain PyTorch over the same networks: the baseline Pyro is timed against.

It draws the guide's samples in the guide's order (``tau``, then ``z``) with the same shapes, so for
the same RNG state it returns the estimate ``Trace_ELBO`` returns (up to float summation order), and
it uses the same densities (:func:`~proseg_pyro.normal.normal_log_prob` for the Gaussians):
what remains between the two is Pyro's machinery (traces, plates, masks, scales, checks).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Categorical, Dirichlet, Normal

from proseg_pyro.normal import normal_log_prob
from proseg_pyro.guide import ProSegGuide
from proseg_pyro.likelihoods import soft_dice
from proseg_pyro.model import ProSegModel

_EVENT = (-3, -2, -1)


def _check_supported(model: ProSegModel) -> None:
    config = model.config
    if (config.tau_prior, config.y_likelihood) != ("dirichlet", "categorical"):
        raise ValueError("the hand-written ELBO covers tau_prior 'dirichlet' with y_likelihood 'categorical'")


def handwritten_loss(model: ProSegModel, guide: ProSegGuide, x: torch.Tensor, y: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """Negative ELBO, one sample: ``x`` (B, C, H, W), ``y`` (B, R, H, W) long, ``mask`` (B, R) bool -> scalar."""
    _check_supported(model)
    c = model.config
    batch, raters = mask.shape
    plates = (batch, raters)
    # guide: tau ~ q(tau | r = i), z ~ q(z | x)
    concentration = F.softplus(guide.tau_concentration_raw[:raters]) + c.concentration_floor
    q_tau = Dirichlet(concentration.expand(*plates, c.tau_dim))
    tau = q_tau.rsample()  # (B, R, T)
    loc, scale = guide.z_heads(guide.backbone(x))  # (B, 1 or R, Cz, H, W)
    shape = (*plates, *loc.shape[-3:])
    z = Normal(loc.expand(shape), scale.expand(shape)).rsample()  # (B, R, Cz, H, W)
    zero = z.new_zeros(())
    # model: log p(tau) + log p(z) + log p(x | z) + log p(r | tau) + log p(y | tau, z), per (b, i),
    # the pixel terms per pixel
    pixels = x.shape[-2] * x.shape[-1]
    terms = (
        (c.beta_tau, Dirichlet(torch.full((c.tau_dim,), c.alpha0, device=x.device)).log_prob(tau)
         - q_tau.log_prob(tau)),
        (c.beta_z / pixels, normal_log_prob(z, zero, zero + 1).sum(_EVENT) - normal_log_prob(z, loc, scale).sum(_EVENT)),
        (c.weight_x / (x.shape[-3] * pixels),
         normal_log_prob(x.unsqueeze(1), model.image_decoder(z), zero + c.x_sigma).sum(_EVENT)),
        (c.weight_r, Categorical(logits=model.classifier(tau)).log_prob(torch.arange(raters, device=x.device))),
    )
    logits = model.predictor(z, tau)
    terms += ((c.weight_y / pixels, Categorical(logits=logits).log_prob(y).sum((-2, -1))),
              (c.dice_weight, soft_dice(logits.softmax(-1), y) - 1))
    return -sum(torch.where(mask, weight * term, 0.0).sum() for weight, term in terms)
