"""Posterior-predictive sampling: personalised (a chosen rater's style) and prior (diverse).

Both draw all samples of a chunk in one vectorised pass through the model's and guide's
distribution factories (a leading sample dimension), never a Python loop per sample or per image.
"""
from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from .chunks import chunk_sizes
from .errors import ProSegError
from .guide import ProSegGuide
from .model import ProSegModel
from .normal import standard_normal_
from .tau_families import TAU_FAMILIES


def _predict(model: ProSegModel, tau: torch.Tensor, z: torch.Tensor, out: torch.Tensor,
             style_offset: torch.Tensor | None = None, tile: int = 2 ** 21) -> torch.Tensor:
    """Write into ``out`` (..., H, W) the foreground probabilities of p(y | tau, z), or into ``out``
    (..., H, W, K) its class probabilities, for ``tau`` (..., T), ``z`` (..., Cz, H, W) and the raters'
    ``style_offset`` (None, or broadcastable to (..., hidden)); returns ``out``.

    The predictor runs on a few maps at a time (about ``tile`` latent values): its per-pixel
    intermediates then stay in cache, which halves its time on a CPU against one pass over a chunk.
    """
    lead = z.shape[:-3]
    tau, z = tau.reshape(-1, tau.shape[-1]), z.reshape(-1, *z.shape[-3:])
    if style_offset is not None:
        style_offset = style_offset.expand(*lead, style_offset.shape[-1]).reshape(len(z), -1)
    flat_out = out.view(len(z), *out.shape[len(lead):])
    probs = model.class_probs if flat_out.dim() == 4 else model.foreground_probs
    step = max(1, tile // z[0].numel())
    for start in range(0, len(z), step):
        part = slice(start, start + step)
        flat_out[part] = probs(tau[part], z[part], None if style_offset is None else style_offset[part])
    return out


def _normal_(mean: torch.Tensor, std: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` with draws of ``Normal(mean, std)`` (parameters broadcast to its shape), the noise
    drawn on all CPU cores (:func:`~proseg_pyro.normal.standard_normal_`); returns ``out``."""
    return torch.addcmul(mean, standard_normal_(out), std, out=out)


def _chosen_latent_(loc: torch.Tensor, scale: torch.Tensor, rater: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """z ~ q(z_i | x) for each sample's rater i into ``out`` (s, B, Cz, H, W): ``loc``/``scale``
    (B, 1 or R, Cz, H, W), ``rater`` (s, B). A shared head is broadcast, per-rater heads are gathered
    with ``index_select``: no per-sample copies of the parameters for the shared head."""
    samples, batch = rater.shape
    if loc.shape[1] == 1:
        return _normal_(loc[:, 0], scale[:, 0], out)
    rows = (torch.arange(batch, device=rater.device) * loc.shape[1] + rater).flatten()
    mean = loc.flatten(0, 1).index_select(0, rows).unflatten(0, (samples, batch))
    std = scale.flatten(0, 1).index_select(0, rows).unflatten(0, (samples, batch))
    return _normal_(mean, std, out)


def _outputs(model: ProSegModel, samples: int, maps: tuple[int, ...], like: torch.Tensor,
             return_class_probs: bool) -> torch.Tensor:
    """Room for ``samples`` predictions of ``maps`` (e.g. (B, N)) images like ``like`` (..., H, W):
    (S, *maps, H, W), or (S, *maps, H, W, K) with ``return_class_probs``."""
    classes = (model.config.num_classes,) if return_class_probs else ()
    return like.new_empty(samples, *maps, *like.shape[-2:], *classes)


def _latent_buffer(sizes: list[int], shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """One (max(sizes), *shape) buffer that every chunk's latent draws reuse: fresh memory of this
    size would be zeroed by the system on first touch, a third of the time of drawing the noise."""
    return like.new_empty(max(sizes, default=0), *shape)


@torch.no_grad()
def personalised(model: ProSegModel, guide: ProSegGuide, x: torch.Tensor, raters, num_samples: int,
                 return_class_probs: bool = False, max_elements: int = 2 ** 27) -> torch.Tensor:
    """Samples in the style of each of ``raters``: tau ~ q(tau | r), z ~ q(z_r | x), p(y | tau, z, delta_r).

    ``x`` (B, C, H, W); ``raters`` a sequence of N rater indices. Returns foreground probabilities
    (S, B, N, H, W), or class probabilities (S, B, N, H, W, K) with ``return_class_probs``.
    """
    raters = torch.as_tensor(list(raters), dtype=torch.long, device=x.device)
    batch, count = x.shape[0], len(raters)
    tau_q = guide.tau_dist(raters)  # batch (N,)
    style_offset = model.style_offsets(raters)  # (N, hidden) or None
    z_q = guide.z_dist(x, raters).base_dist  # batch (B, 1 or N, Cz, H, W)
    event = z_q.loc.shape[-3:]
    per_sample = batch * count * (math.prod(event) + model.config.num_classes * math.prod(x.shape[-2:]))
    sizes = chunk_sizes(num_samples, per_sample, max_elements)
    out = _outputs(model, num_samples, (batch, count), x, return_class_probs)
    latent = _latent_buffer(sizes, (batch, count, *event), x)
    start = 0
    for size in sizes:
        tau = tau_q.sample((size, batch))  # (s, B, N, T)
        z = _normal_(z_q.loc, z_q.scale, latent[:size])  # (s, B, N, Cz, H, W)
        _predict(model, tau, z, out[start:start + size], style_offset)
        start += size
    return out


def sampling_tau(model: PyroModule, guide: PyroModule, alpha: float | None, like: torch.Tensor) -> dist.Distribution:
    """The distribution of tau* for prior sampling, by the config's tau family: for the Dirichlet,
    Dir(``alpha``) if given, else Dir(``alpha_star``) of the config, else the Dirichlet fitted to the
    training raters' q(tau | r); ``like`` gives device and dtype. Event (T,)."""
    config = model.config
    raters = torch.arange(config.num_raters, device=like.device)
    return TAU_FAMILIES[config.tau_prior].sampling_prior(config, alpha, like, model.tau_prior,
                                                         lambda: guide.tau_dist(raters))


def takes_alpha_star(model: PyroModule) -> bool:
    """Whether ``model``'s prior draws take tau* from Dir(alpha*): it has a tau whose family samples so."""
    return hasattr(model, "tau_prior") and TAU_FAMILIES[model.config.tau_prior].alpha_star_applies


def use_alpha_star(model: PyroModule, guide: PyroModule, alpha: float | None, source: str) -> None:
    """Make prior draws of a trained ``model``/``guide`` pair take tau* ~ Dir(``alpha``) instead of the
    config's ``alpha_star`` (which enters sampling only, so no retraining is needed); None keeps the
    config's. Refused with a :class:`~proseg_pyro.errors.ProSegError` naming ``source`` (the
    checkpoint) where the method has no tau or its tau family does not sample from Dir(alpha*)."""
    if alpha is None:
        return
    config = model.config
    if not takes_alpha_star(model):
        raise ProSegError(f"{source}: --alpha-star applies to models whose prior draws take tau* from "
                          f"Dir(alpha*); method {config.method!r} with tau family {config.tau_prior!r} has none")
    model.config = guide.config = config.replace(alpha_star=alpha)


@torch.no_grad()
def prior(model: ProSegModel, guide: ProSegGuide, x: torch.Tensor, num_samples: int, alpha: float | None = None,
          return_class_probs: bool = False, return_raters: bool = False, max_elements: int = 2 ** 27):
    """Diverse samples: tau* ~ Dir(alpha*), i = argmax classifier(tau*), z ~ q(z_i | x), p(y | tau*, z).

    ``x`` (B, C, H, W). Returns foreground probabilities (S, B, H, W) (class probabilities
    (S, B, H, W, K) with ``return_class_probs``), and with ``return_raters`` also the chosen rater
    per sample (S, B). ``alpha`` (a symmetric concentration) defaults to the config's ``alpha_star``,
    and without one to the Dirichlet fitted to the raters' posteriors.
    """
    config = model.config
    batch = x.shape[0]
    tau_p = sampling_tau(model, guide, alpha, x)
    z_q = guide.z_dist(x)  # batch (B, 1) or (B, R)
    loc, scale = z_q.base_dist.loc, z_q.base_dist.scale
    per_sample = batch * (math.prod(z_q.event_shape) + config.num_classes * math.prod(x.shape[-2:]))
    sizes = chunk_sizes(num_samples, per_sample, max_elements)
    probs = _outputs(model, num_samples, (batch,), x, return_class_probs)
    chosen = x.new_empty(num_samples, batch, dtype=torch.long)
    latent = _latent_buffer(sizes, (batch, *z_q.event_shape), x)
    start = 0
    for size in sizes:
        tau = tau_p.sample((size, batch))  # (s, B, T)
        rater = model.classifier(tau).argmax(-1)  # (s, B)
        chosen[start:start + size] = rater
        z = _chosen_latent_(loc, scale, rater, latent[:size])  # (s, B, Cz, H, W)
        _predict(model, tau, z, probs[start:start + size])
        start += size
    return (probs, chosen) if return_raters else probs
