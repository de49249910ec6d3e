"""The registry of tau families: each bundles the prior on a rater's preference ``tau``, the guide's
variational family q(tau | r) and the distribution prior sampling draws tau* from.

A family is one :class:`TauFamily` entry of :data:`TAU_FAMILIES` under the name the config's
``tau_prior`` selects; the model, the guide, prior sampling and the ablations look it up, so adding
an entry is all a new family takes.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import pyro.distributions as dist
import torch
import torch.nn.functional as F

from .config import ProSegConfig
from .positive import inverse_softplus

# (T, alpha0, a tensor giving device and dtype) -> p(tau), event (T,)
Prior = Callable[[int, float, torch.Tensor], dist.Distribution]
# (config, rater slots) -> the initial values of the guide's per-rater parameters, {name: (slots, ...)}
InitialParameters = Callable[[ProSegConfig, int], dict[str, torch.Tensor]]
# ({name: rows (N, ...) of those parameters}, config) -> q(tau | r) of N raters, batch (N,), event (T,)
Posterior = Callable[[dict[str, torch.Tensor], ProSegConfig], dist.Distribution]
# (config, alpha or None, a tensor giving device and dtype, the model's p(tau), q(tau | r) of the R training raters) -> event (T,)
SamplingPrior = Callable[[ProSegConfig, "float | None", torch.Tensor, Callable[[], dist.Distribution],
                          Callable[[], dist.Distribution]], dist.Distribution]


@dataclass(frozen=True)
class TauFamily:
    """One tau family.

    ``prior(T, alpha0, like)``: p(tau). ``initial_parameters(config, slots)``: the guide's learned
    per-rater parameters (their names are the guide's state-dict keys), each with a row per rater
    slot. ``posterior(rows, config)``: q(tau | r) from those rows. ``sampling_prior(config, alpha,
    like, model_prior, raters_posterior)``: the distribution of tau* for prior (diverse) samples,
    given a caller's ``alpha`` (or None), the model's prior and the training raters' posteriors
    (both called only if needed). ``alpha_star_applies``: whether ``sampling_prior`` draws from
    Dir(alpha*) (so a caller's ``alpha`` changes the draws; otherwise it is refused, not ignored).
    """

    prior: Prior
    initial_parameters: InitialParameters
    posterior: Posterior
    sampling_prior: SamplingPrior
    alpha_star_applies: bool = False


def initial_concentration(config: ProSegConfig, slots: int) -> torch.Tensor:
    """Each rater starts at ``c = config.tau_init_concentration`` on two entries of its own and
    ``c / 10`` elsewhere: (slots, T).

    Rater ``a`` < T/2 takes entries ``a`` and ``a + T/2`` (with c = 1 the released code's start
    for 4 raters), the next raters the other pairs of entries in order, so that no two of the first
    T (T - 1) / 2 raters start alike (with ``a`` and ``a + T/2`` mod T for all, 7 raters and
    T = 8 would start as 3 identical pairs and one more, and their styles stay merged)."""
    dim = config.tau_dim
    halves = [(a, a + dim // 2) for a in range(dim // 2)]
    pairs = halves + [pair for pair in itertools.combinations(range(dim), 2) if pair not in halves]
    own = config.tau_init_concentration
    start = torch.full((slots, dim), own / 10)
    for rater in range(slots):
        start[rater, list(pairs[rater % len(pairs)])] = own
    return start


def moment_matched_concentration(posterior: dist.Distribution) -> torch.Tensor:
    """alpha* (T,): the Dirichlet matching the mean and second moments of the mixture
    ``(1/R) sum_r q(tau | r)`` of ``posterior`` (batch (R,), event (T,)), so prior draws fall where
    the raters' preferences lie."""
    mean = posterior.mean.mean(0)
    second = (posterior.variance + posterior.mean ** 2).mean(0)
    precision = (mean * (1 - mean) / (second - mean ** 2)).mean() - 1
    return mean * precision.clamp_min(1e-3)


def _dirichlet_sampling_prior(config: ProSegConfig, alpha: float | None, like: torch.Tensor,
                              model_prior: Callable[[], dist.Distribution],
                              raters_posterior: Callable[[], dist.Distribution]) -> dist.Distribution:
    """Dir(alpha*): ``alpha`` if given, else the config's ``alpha_star``, else the Dirichlet fitted to
    the raters' posteriors (:func:`moment_matched_concentration`)."""
    alpha = alpha if alpha is not None else config.alpha_star
    if alpha is None:
        return dist.Dirichlet(moment_matched_concentration(raters_posterior()).to(like))
    return dist.Dirichlet(like.new_full((config.tau_dim,), alpha))


TAU_FAMILIES: dict[str, TauFamily] = {
    # q(tau | r = i) = Dirichlet(softplus(e_i) + concentration_floor), e_i a learned (T,) embedding
    "dirichlet": TauFamily(
        prior=lambda dim, alpha0, like: dist.Dirichlet(like.new_full((dim,), alpha0)),
        initial_parameters=lambda config, slots: {
            "tau_concentration_raw": inverse_softplus(initial_concentration(config, slots))},
        posterior=lambda rows, config: dist.Dirichlet(
            F.softplus(rows["tau_concentration_raw"]) + config.concentration_floor),
        sampling_prior=_dirichlet_sampling_prior, alpha_star_applies=True),
    # Gaussian on the first T-1 logits, mapped to the simplex by the additive logistic transform;
    # q(tau | r = i) of the same family with a learned loc and scale; prior samples from the prior
    "logistic_normal": TauFamily(
        prior=lambda dim, alpha0, like: dist.LogisticNormal(like.new_zeros(dim - 1), like.new_ones(dim - 1)),
        initial_parameters=lambda config, slots: {
            "tau_loc": 0.5 * torch.randn(slots, config.tau_dim - 1),
            "tau_scale_raw": torch.full((slots, config.tau_dim - 1), inverse_softplus(torch.tensor(0.5)).item())},
        posterior=lambda rows, config: dist.LogisticNormal(rows["tau_loc"], F.softplus(rows["tau_scale_raw"]) + 1e-3),
        sampling_prior=lambda config, alpha, like, model_prior, raters_posterior: model_prior()),
}
