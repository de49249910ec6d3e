"""``prob_unet``: the Probabilistic U-Net.

Kohl et al., "A probabilistic U-Net for segmentation of ambiguous images", NeurIPS 2018.

Model, per image ``b`` and annotation slot ``i`` (each annotation explained by its own latent)::

    z_bi ~ Normal(mu_prior(x_b), sigma_prior(x_b))         global latent, event (D,), D = 6
    y_bi ~ Categorical(softmax(fcomb(unet(x_b), z_bi)))      fcomb: z tiled over the image,
                                                             concatenated with the U-Net features, 1x1 convs
Guide: ``z_bi ~ Normal(mu_post(x_b, y_bi), sigma_post(x_b, y_bi))`` (the posterior net sees the
image and the one-hot annotation). With beta = 1 the ELBO is the paper's loss (cross-entropy +
KL(posterior || prior)); Trace_ELBO estimates the KL by one sample instead of in closed form.

No rater identity: prior samples draw ``z`` from the prior net (the "generation" mode), and the
"personalised" samples are the same unconditional samples, drawn independently for each rater
slot, so its D_Ai columns score a generic sample against each rater. Departures: the shared U-Net
(GroupNorm) and the shared :class:`~proseg_pyro.networks.SegmentationPredictor` as ``fcomb``; the
prior/posterior nets are :class:`~proseg_pyro.baselines.blocks.GaussianEncoder` (softplus scale).
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.nn import PyroModule

from ..config import ProSegConfig
from ..likelihoods import observe_annotations
from ..method_entry import Method
from ..networks import SegmentationPredictor
from .blocks import GaussianEncoder
from .common import FeatureModel, Plates, annotation_plates, as_observation, in_chunks

LATENT_DIM = 6
BETA = 1.0  # weight of the KL term (the paper's)


class ProbUNetModel(FeatureModel):
    """p(z | x) p(y | x, z) of the Probabilistic U-Net for B images and R annotation slots."""

    def __init__(self, config: ProSegConfig):
        super().__init__(config)
        c = config
        self.prior_net = GaussianEncoder(c.in_channels, LATENT_DIM, c.base_channels, c.depth)
        self.fcomb = SegmentationPredictor(c.feature_channels, LATENT_DIM, c.predictor_hidden,
                                           self.y_family.channels(c.num_classes))

    def z_prior(self, x: torch.Tensor) -> dist.Distribution:
        """p(z | x): ``x`` (..., C, H, W) -> batch (...), event (D,)."""
        return dist.Normal(*self.prior_net(x)).to_event(1)

    def foreground_probs(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``features`` (..., F, H, W) and ``z`` (..., D), broadcast -> foreground probabilities (..., H, W)."""
        return self.y_family.foreground(self.fcomb(features, z))

    def observe(self, x: torch.Tensor, features: torch.Tensor, prior: dist.Distribution, y: torch.Tensor | None,
                mask: torch.Tensor | None, plates: Plates | None = None) -> torch.Tensor:
        """Sites ``z`` and ``y`` given the U-Net ``features`` (B, F, H, W) and ``prior`` p(z | x) (batch (B, 1))."""
        c, pixels = self.config, x.shape[-2] * x.shape[-1]
        with annotation_plates(x, c.num_raters, mask, plates):
            with poutine.scale(scale=BETA / pixels):  # the objective per pixel, as ProSeg's
                z = pyro.sample("z", prior)  # (B, R, D)
            return observe_annotations("y", self.y_family, self.y_family.dist(self.fcomb(features.unsqueeze(1), z)),
                                       as_observation(y, x), c.weight_y, c.dice_weight, pixels)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        return self.observe(x, self.unet(x), self.z_prior(x.unsqueeze(1)), y, mask)


class ProbUNetGuide(PyroModule):
    """q(z | x, y_i): the posterior net on the image and rater i's one-hot annotation."""

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config
        c = config
        self.posterior_net = GaussianEncoder(c.in_channels + c.num_classes, LATENT_DIM, c.base_channels, c.depth)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        if y is None:
            raise ValueError("the Probabilistic U-Net posterior needs the annotations y")
        raters = self.config.num_raters
        one_hot = F.one_hot(y.long(), self.config.num_classes).movedim(-1, -3).to(x.dtype)  # (B, R, K, H, W)
        images = x.unsqueeze(1).expand(-1, raters, *x.shape[1:])
        loc, scale = self.posterior_net(torch.cat([images, one_hot], dim=-3))  # (B, R, D)
        with annotation_plates(x, raters, mask), poutine.scale(scale=BETA / (x.shape[-2] * x.shape[-1])):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def sample_channels(config: ProSegConfig) -> int:
    """Values per pixel and sample while decoding: the predictor's hidden layer and the classes."""
    return config.predictor_hidden + config.num_classes


@torch.no_grad()
def personalised(model: ProbUNetModel, guide: ProbUNetGuide, x: torch.Tensor, raters, num_samples: int
                 ) -> torch.Tensor:
    """Unconditional samples (the model has no rater identity), independent per rater slot: (S, B, N, H, W)."""
    count = len(list(raters))
    features = model.unet(x)[None, :, None]  # (1, B, 1, F, H, W)
    prior = model.z_prior(x)  # batch (B,)
    return in_chunks(num_samples, x, count, sample_channels(model.config), lambda size: model.foreground_probs(
        features, prior.sample((size, count)).transpose(1, 2)))


@torch.no_grad()
def prior(model: ProbUNetModel, guide: ProbUNetGuide, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Samples with z from the prior net: (S, B, H, W)."""
    features = model.unet(x)[None]  # (1, B, F, H, W)
    z_prior = model.z_prior(x)
    return in_chunks(num_samples, x, 1, sample_channels(model.config), lambda size: model.foreground_probs(
        features, z_prior.sample((size,))))


METHOD = Method("prob_unet", lambda config: (ProbUNetModel(config), ProbUNetGuide(config)), personalised, prior,
                "Kohl et al., A probabilistic U-Net for segmentation of ambiguous images, NeurIPS 2018")
