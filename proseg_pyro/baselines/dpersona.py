"""``dpersona``: D-Persona, diverse latent sampling (stage I) and per-rater projection heads (stage II).

Wu et al., "Diversified and personalized multi-rater medical image segmentation", CVPR 2024.

Stage I is the Probabilistic U-Net (:mod:`.prob_unet`) plus the paper's bound-constrained loss: of
``M`` reparameterised prior samples, the pixel-wise maximum must cover the union of the annotations
and the minimum must stay inside their intersection (binary cross-entropy, weight 0.5), added as a
``pyro.factor`` under the images plate. Stage II gives rater ``i`` a projection head: a conv
encoder of the U-Net features yields a query ``q_i(x)`` that attends over a set of ``M`` prior
samples, ``z*_i = sum_m softmax_m(q_i . z_m) z_m``, decoded by the stage-I ``fcomb`` and observed
against rater ``i``'s annotation (site ``y_persona``).

Personalised samples use stage II (a fresh set of prior samples per draw); prior samples use
stage I (``z`` from the prior net). Departures: the stages train jointly in one loop, stage II
through a stop-gradient (its features, prior samples and ``fcomb`` weights are detached), not
one after the other; stage I's reconstruction term uses the posterior sample as a proper ELBO
(the released code scores a prior sample) with one posterior per annotation rather than one from
all annotations stacked; ``M`` = 16 prior samples in both the bound and the projection (the
released code uses 10 and 100); the heads share their conv trunk (one encoder with R x D outputs).
"""
from __future__ import annotations

import pyro
import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..config import ProSegConfig
from ..likelihoods import observe_annotations
from ..method_entry import Method
from .blocks import ConvEncoder
from .common import annotation_plates, as_observation, in_chunks, make_plates
from .prob_unet import LATENT_DIM, ProbUNetGuide, ProbUNetModel, prior, sample_channels

SET_SIZE = 16  # prior samples in the bound loss and in the set the projection heads attend over
BOUND_WEIGHT = 0.5


def bound_targets(y: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Union and intersection of the present raters' foreground.

    ``y`` (B, R, H, W), ``mask`` (B, R) bool -> union, intersection (B, H, W) float.
    """
    present = mask[..., None, None]
    foreground_ = y > 0
    return (foreground_ & present).any(1).to(torch.float32), (foreground_ | ~present).all(1).to(torch.float32)


class DPersonaModel(ProbUNetModel):
    """Stage I (Probabilistic U-Net + bound loss) and stage II (projection heads) in one Pyro model."""

    def __init__(self, config: ProSegConfig):
        super().__init__(config)
        self.heads = ConvEncoder(config.feature_channels, config.num_raters * LATENT_DIM, config.base_channels,
                                 config.depth)

    def project(self, features: torch.Tensor, z_set: torch.Tensor) -> torch.Tensor:
        """Each rater's latent from a set of prior samples: ``features`` (..., F, H, W), ``z_set`` (..., M, D)
        -> (..., R, D)."""
        queries = self.heads(features).unflatten(-1, (self.config.num_raters, LATENT_DIM))
        weights = torch.einsum("...rd,...md->...rm", queries, z_set).softmax(-1)
        return torch.einsum("...rm,...md->...rd", weights, z_set)

    def _frozen_fcomb(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``fcomb`` with its weights detached: stage II's loss trains the heads only."""
        weights = {name: value.detach() for name, value in self.fcomb.named_parameters()}
        return functional_call(self.fcomb, weights, (features, z))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        raters = self.config.num_raters
        if mask is None:
            mask = torch.ones(x.shape[0], raters, dtype=torch.bool, device=x.device)
        plates = make_plates(x, raters)
        features = self.unet(x)  # (B, F, H, W)
        prior_z = self.z_prior(x.unsqueeze(1))  # batch (B, 1)
        persona = self._frozen_fcomb(features.detach()[:, None], self.project(
            features.detach(), prior_z.sample((SET_SIZE,))[..., 0, :].transpose(0, 1)))  # (B, R, H, W, K_out)
        if y is not None:
            union, intersection = bound_targets(y, mask)
            samples = self.foreground_probs(features, prior_z.rsample((SET_SIZE,))[..., 0, :])  # (M, B, H, W)
            bound = (F.binary_cross_entropy(samples.amax(0).clamp(1e-6, 1 - 1e-6), union, reduction="none") +
                     F.binary_cross_entropy(samples.amin(0).clamp(1e-6, 1 - 1e-6), intersection, reduction="none"))
            with plates[0]:
                pyro.factor("bound", -BOUND_WEIGHT * bound.mean((-2, -1))[:, None])  # per pixel, as ``y``
        with annotation_plates(x, raters, mask, plates):
            observe_annotations("y_persona", self.y_family, self.y_family.dist(persona), as_observation(y, x),
                                self.config.weight_y, self.config.dice_weight, x.shape[-2] * x.shape[-1])
        return self.observe(x, features, prior_z, y, mask, plates)


@torch.no_grad()
def personalised(model: DPersonaModel, guide: ProbUNetGuide, x: torch.Tensor, raters, num_samples: int
                 ) -> torch.Tensor:
    """Stage II: rater ``i``'s projection of a fresh set of prior samples per draw: (S, B, N, H, W)."""
    raters = list(raters)
    features = model.unet(x)
    z_prior = model.z_prior(x)

    def draw(size: int) -> torch.Tensor:
        projected = model.project(features, z_prior.sample((size, SET_SIZE)).transpose(1, 2))  # (s, B, R, D)
        return model.foreground_probs(features[None, :, None], projected[:, :, raters])

    return in_chunks(num_samples, x, len(raters), sample_channels(model.config), draw)


METHOD = Method("dpersona", lambda config: (DPersonaModel(config), ProbUNetGuide(config)), personalised, prior,
                "Wu et al., Diversified and personalized multi-rater medical image segmentation, CVPR 2024")
