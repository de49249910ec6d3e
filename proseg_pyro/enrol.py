"""Enrolling a rater the model never saw, from a few annotated images, with every network frozen.

The new rater (``config.enrolled_raters``) gets one more row of the guide's tau embedding,
initialised at the mean of the training raters' rows, and a style offset ``delta`` (hidden,) in the
model, a point estimate under the prior ``Normal(0, offset_scale^2 I)``. With per-rater ``z`` heads
(whose styles lie partly in the heads) it starts instead as a copy of the training rater whose
style fits its annotations best, head and tau row, and that head stays frozen as the other
networks. SVI fits tau and delta alone
to the annotation part of the ELBO (the image term does not depend on them, and the rater
classifier has no class for the new rater)::

    E_q(tau_new) E_q(z|x) [ weight_y / (H W) * log p(y | tau, z, delta) ]  -  beta_tau * KL(q(tau_new) || p(tau))
        + log p(delta) / (N H W)

per image (per pixel, as the training objective). Why the offset: the frozen predictor learned only the tau points of the training raters,
so a style outside their range (a more generous rater than any seen) has no tau that gives it;
``delta`` moves tau's input to the predictor to wherever the new annotations need it.
``offset_scale=0`` fits q(tau_new) alone. Afterwards ``inference.personalised`` samples in the new
style by its slot index.
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


def add_rater(model: ProSegModel, guide: ProSegGuide, name: str,
              template: int | None = None) -> tuple[ProSegModel, ProSegGuide, list[str]]:
    """Copies of ``model`` and ``guide`` with a slot for rater ``name`` (their config lists it): its
    tau row (and, with per-rater heads, its ``z`` head) a copy of training rater ``template``'s, or
    the mean of the training raters' where None; its style offset 0. Also returns the names of the
    guide's tau parameters, whose last row is the new rater's."""
    config = guide.config
    if name in config.slot_names():
        raise ProSegError(f"rater {name!r} is already known to this checkpoint")
    new_config = config.replace(enrolled_raters=[*config.enrolled_raters, name])
    device = next(guide.parameters()).device
    new_guide, new_model = type(guide)(new_config).to(device), type(model)(new_config).to(device)
    state = guide.state_dict()
    for key, value in new_guide.state_dict().items():
        if value.shape != state[key].shape:  # a block of rows per rater slot: add the new slot's
            per_slot = value.shape[0] - state[key].shape[0]
            slots = state[key].unflatten(0, (-1, per_slot))
            start = slots[:config.num_raters].mean(0) if template is None else slots[template]
            state[key] = torch.cat([state[key], start])
    new_guide.load_state_dict(state)
    model_state = model.state_dict()
    model_state["enrolled_offsets"] = torch.cat([model.enrolled_offsets, model.enrolled_offsets.new_zeros(
        1, config.predictor_hidden)])
    new_model.load_state_dict(model_state)
    return new_model.eval(), new_guide.eval(), list(new_guide.tau_parameter_names)


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
    """The model, guide and config that know the new rater, its slot, the loss (-ELBO per image)
    per step, and the training rater it started from."""

    model: ProSegModel
    guide: ProSegGuide
    config: ProSegConfig
    index: int
    losses: list[float]
    template: int | None = None  # the training rater it started from (per-rater heads), else None


def enrol(model: ProSegModel, guide: ProSegGuide, images: torch.Tensor, annotations: torch.Tensor, name: str,
          steps: int = 300, lr: float = 0.05, num_particles: int = 8, seed: int = 0, offset_scale: float = 1.0,
          progress: bool = False) -> Enrolment:
    """Fit rater ``name``'s q(tau | r) and style offset to ``annotations`` (N, H, W) long of
    ``images`` (N, C, H, W).

    Adam on the new tau row and offset only (all networks frozen), ``num_particles`` vectorised ELBO
    particles per step; ``offset_scale`` is the prior scale of the offset (0: no offset).
    ``model`` and ``guide`` are left unchanged; the returned ones hold every earlier rater too.
    """
    if images.ndim != 4 or annotations.shape != (images.shape[0], *images.shape[-2:]) or not len(images):
        raise ProSegError(f"enrolment needs images (N, C, H, W) and annotations (N, H, W), got "
                          f"{tuple(images.shape)} and {tuple(annotations.shape)}")
    if offset_scale < 0:
        raise ProSegError(f"enrolment needs offset_scale >= 0, got {offset_scale}")
    template = closest_style(model, guide, images, annotations, seed) if guide.config.z_head != "shared" else None
    new_model, new_guide, row_names = add_rater(model, guide, name, template)
    config = new_guide.config
    index = config.num_raters + len(config.enrolled_raters) - 1
    slot = torch.tensor([index], device=images.device)
    with torch.no_grad():
        z_q = new_guide.z_dist(images, slot)  # the shared head or the new slot's: batch (N, 1)
        z_q = dist.Normal(z_q.base_dist.loc[:, 0], z_q.base_dist.scale[:, 0]).to_event(3)
    labels = annotations.to(images.dtype)
    pixels = images.shape[-2] * images.shape[-1]
    style_offset = torch.zeros(config.predictor_hidden, device=images.device, requires_grad=offset_scale > 0)

    # z ~ q(z | x) is drawn outside the programs, one per particle: q(z | x) is frozen, so its KL is
    # a constant and only tau (and the style offset, a point estimate) are sites here.
    def annotation_model(z: torch.Tensor) -> None:
        drawn_offset = None
        if offset_scale > 0:
            prior = dist.Normal(new_model.zero, offset_scale).expand([len(style_offset)]).to_event(1)
            with poutine.scale(scale=1 / pixels):  # against the per-pixel likelihood, as a sum over pixels
                drawn_offset = pyro.sample("style_offset", prior)  # (hidden,), or (P, 1, hidden) with vectorised particles
        with pyro.plate("images", len(images), dim=-1):
            with poutine.scale(scale=config.beta_tau):
                tau = pyro.sample("tau", new_model.tau_prior())
            with poutine.scale(scale=config.weight_y / pixels):  # per pixel, as in training
                pyro.sample("y", new_model.y_likelihood(tau, z, drawn_offset), obs=labels)

    def annotation_guide(z: torch.Tensor) -> None:
        if offset_scale > 0:
            pyro.sample("style_offset", dist.Delta(style_offset, event_dim=1))
        with pyro.plate("images", len(images), dim=-1), poutine.scale(scale=config.beta_tau):
            pyro.sample("tau", new_guide.tau_dist(slot).expand([len(images)]))

    elbo = pyro.infer.TraceMeanField_ELBO(num_particles=num_particles, vectorize_particles=True,
                                          max_plate_nesting=1)
    rows = [dict(new_guide.named_parameters())[key] for key in row_names]
    optimizer = torch.optim.Adam(rows + ([style_offset] if style_offset.requires_grad else []), lr=lr)
    losses = []
    with _train_rows([new_model, new_guide], rows, index), torch.random.fork_rng(
            devices=[images.device] if images.is_cuda else []):
        torch.manual_seed(seed)
        for _ in tqdm(range(steps), desc=f"enrol {name}", unit="step", disable=not progress, leave=False):
            z = z_q.sample((num_particles,))  # (P, N, Cz, H, W)
            loss = elbo.differentiable_loss(annotation_model, annotation_guide, z) / len(images)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    with torch.no_grad():
        new_model.enrolled_offsets[-1] = style_offset
    return Enrolment(new_model, new_guide, config, index, losses, template)


def closest_style(model: ProSegModel, guide: ProSegGuide, images: torch.Tensor, annotations: torch.Tensor,
                  seed: int = 0) -> int:
    """The training rater whose personalised predictions of ``images`` (N, C, H, W) match
    ``annotations`` (N, H, W) best (mean Dice), drawn under ``seed``."""
    with torch.random.fork_rng(devices=[images.device] if images.is_cuda else []):
        torch.manual_seed(seed)
        dice = style_dice(model, guide, images, annotations, list(range(guide.config.num_raters)))
    return max(range(len(dice)), key=dice.__getitem__)


@torch.no_grad()
def style_dice(model: ProSegModel, guide: ProSegGuide, images: torch.Tensor, annotations: torch.Tensor,
               raters: list[int], num_samples: int = 16, batch_size: int = 16) -> list[float]:
    """Mean Dice of ``annotations`` (N, H, W) with the personalised prediction (mean of
    ``num_samples`` draws, > 0.5) in the style of each of ``raters``: a list, one per rater."""
    means = torch.cat([inference.personalised(model, guide, images[start:start + batch_size], raters,
                                              num_samples).mean(0)
                       for start in range(0, len(images), batch_size)])  # (N, len(raters), H, W)
    return metrics.mean_dice_matrix(annotations[:, None].bool(), None, means)[0].tolist()
