"""Enrolling a rater the model never saw: fit only its q(tau | r) from a few annotated images.

The trained networks stay frozen. The new rater gets one more row of the guide's tau embedding
(``config.enrolled_raters``), initialised at the mean of the training raters' rows, and SVI fits
that row alone to the annotation part of the ELBO::

    E_q(tau_new) E_q(z|x) [ weight_y * log p(y | tau, z) ]  -  beta_tau * KL(q(tau_new) || p(tau))

per image (the image term does not depend on tau, and the rater classifier has no class for the
new rater). Afterwards ``inference.personalised`` samples in the new style by its slot index.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from tqdm.auto import tqdm

from . import inference, metrics
from .config import ProSegConfig
from .errors import ProSegError
from .guide import ProSegGuide
from .model import ProSegModel


def rater_names(config: ProSegConfig) -> list[str]:
    """Every rater slot's name: the R training raters (``"0" .. "R-1"`` if unnamed), then the enrolled ones."""
    return list(config.rater_names or map(str, range(config.num_raters))) + list(config.enrolled_raters)


def rater_index(config: ProSegConfig, name: str) -> int:
    """The slot of rater ``name`` (training or enrolled); an unknown name is a ProSegError."""
    names = rater_names(config)
    if name not in names:
        raise ProSegError(f"unknown rater {name!r}; this checkpoint knows {', '.join(names)}")
    return names.index(name)


def add_rater(guide: ProSegGuide, name: str) -> tuple[ProSegGuide, ProSegConfig, list[str]]:
    """A copy of ``guide`` with one more tau row for rater ``name``, initialised at the mean of the
    training raters' rows. Returns the new guide, its config and the names of the per-rater parameters."""
    config = guide.config
    if name in rater_names(config):
        raise ProSegError(f"rater {name!r} is already known to this checkpoint")
    new_config = config.replace(enrolled_raters=[*config.enrolled_raters, name])
    new_guide = ProSegGuide(new_config).to(next(guide.parameters()).device)
    state = guide.state_dict()
    grown = [key for key, value in new_guide.state_dict().items() if value.shape != state[key].shape]
    for key in grown:
        state[key] = torch.cat([state[key], state[key][:config.num_raters].mean(0, keepdim=True)])
    new_guide.load_state_dict(state)
    return new_guide.eval(), new_config, grown


@contextlib.contextmanager
def _train_rows(modules: list[nn.Module], parameters: list[nn.Parameter], row: int) -> Iterator[None]:
    """Freeze every parameter of ``modules`` except row ``row`` of ``parameters``; restore afterwards."""
    flags = [(p, p.requires_grad) for module in modules for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    keep = torch.zeros(len(parameters[0]), 1, device=parameters[0].device)
    keep[row] = 1.0
    hooks = [p.requires_grad_(True).register_hook(lambda grad: grad * keep) for p in parameters]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass
class Enrolment:
    """The guide and config that know the new rater, its slot, and the loss (-ELBO per image) per step."""

    guide: ProSegGuide
    config: ProSegConfig
    index: int
    losses: list[float]


def enrol(model: ProSegModel, guide: ProSegGuide, images: torch.Tensor, annotations: torch.Tensor, name: str,
          steps: int = 300, lr: float = 0.05, num_particles: int = 8, seed: int = 0,
          progress: bool = False) -> Enrolment:
    """Fit rater ``name``'s q(tau | r) to ``annotations`` (N, H, W) long of ``images`` (N, C, H, W).

    Adam on the new tau row only (all networks frozen), ``num_particles`` vectorised ELBO particles
    per step. ``guide`` is left unchanged; the returned one holds every earlier rater too.
    """
    if guide.config.z_head != "shared":
        raise ProSegError("enrolment needs a checkpoint trained with z_head 'shared': with per-rater z heads a "
                          "rater's style lives in its head, which a new rater does not have")
    if images.ndim != 4 or annotations.shape != (images.shape[0], *images.shape[-2:]) or not len(images):
        raise ProSegError(f"enrolment needs images (N, C, H, W) and annotations (N, H, W), got "
                          f"{tuple(images.shape)} and {tuple(annotations.shape)}")
    new_guide, config, grown = add_rater(guide, name)
    index = config.num_raters + len(config.enrolled_raters) - 1
    slot = torch.tensor([index], device=images.device)
    with torch.no_grad():
        z_q = guide.z_dist(images)  # shared head: batch (N, 1)
        z_q = dist.Normal(z_q.base_dist.loc[:, 0], z_q.base_dist.scale[:, 0]).to_event(3)
    labels = annotations.to(images.dtype)

    # z ~ q(z | x) is drawn outside the programs, one per particle: q(z | x) is frozen, so its KL is
    # a constant and only tau is a latent site here.
    def annotation_model(z: torch.Tensor) -> None:
        with pyro.plate("images", len(images), dim=-1):
            with poutine.scale(scale=config.beta_tau):
                tau = pyro.sample("tau", model.tau_prior())
            with poutine.scale(scale=config.weight_y):
                pyro.sample("y", model.y_likelihood(tau, z), obs=labels)

    def annotation_guide(z: torch.Tensor) -> None:
        with pyro.plate("images", len(images), dim=-1), poutine.scale(scale=config.beta_tau):
            pyro.sample("tau", new_guide.tau_dist(slot).expand([len(images)]))

    elbo = pyro.infer.TraceMeanField_ELBO(num_particles=num_particles, vectorize_particles=True,
                                          max_plate_nesting=1)
    parameters = [dict(new_guide.named_parameters())[key] for key in grown]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    losses = []
    with _train_rows([model, new_guide], parameters, index), torch.random.fork_rng(
            devices=[images.device] if images.is_cuda else []):
        torch.manual_seed(seed)
        for _ in tqdm(range(steps), desc=f"enrol {name}", unit="step", disable=not progress, leave=False):
            z = z_q.sample((num_particles,))  # (P, N, Cz, H, W)
            loss = elbo.differentiable_loss(annotation_model, annotation_guide, z) / len(images)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return Enrolment(new_guide, config, index, losses)


@torch.no_grad()
def style_dice(model: ProSegModel, guide: ProSegGuide, images: torch.Tensor, annotations: torch.Tensor,
               raters: list[int], num_samples: int = 16, batch_size: int = 16) -> list[float]:
    """Mean Dice of ``annotations`` (N, H, W) with the personalised prediction (mean of
    ``num_samples`` draws, > 0.5) in the style of each of ``raters``: a list, one per rater."""
    means = torch.cat([inference.personalised(model, guide, images[start:start + batch_size], raters,
                                              num_samples).mean(0)
                       for start in range(0, len(images), batch_size)])  # (N, len(raters), H, W)
    return metrics.mean_dice_matrix(annotations[:, None].bool(), None, means)[0].tolist()
