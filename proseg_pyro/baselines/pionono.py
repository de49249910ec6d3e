"""``pionono``: a learned Gaussian latent per rater.

Schmidt et al., "Probabilistic modeling of inter- and intra-observer variability in medical image
segmentation", ICCV 2023.

Model, for rater ``i`` (a global latent, shared by all images) and image ``b``::

    z_i  ~ Normal(0, 2^2 I)                                   event (D,), D = 8
    y_bi ~ Categorical(softmax(head(unet(x_b), z_i)))          head: z tiled over the image,
                                                               concatenated with the features, 1x1 convs
Guide: ``q(z_i) = MultivariateNormal(mu_i, L_i L_i^T)``, learned per rater (means start spread with
std 8, scales at the prior's 2, as the released code). The ELBO is the paper's loss: the
annotation log-likelihood plus the KL of every rater's distribution to the prior.

Personalised samples draw ``z ~ q(z_r)``; prior samples draw a rater uniformly per sample, then
``z`` from that rater's distribution (the mixture of the raters' distributions). Departures: one
Monte-Carlo sample per step (the released code averages 5 predictions' logits); the KL of the
global latents enters once per mini-batch (the released code averages it per image, which weighs
it far more against a per-pixel mean cross-entropy); no L2 penalty on the head; the shared U-Net
and :class:`~proseg_pyro.networks.SegmentationPredictor` as the head.
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from ..config import ProSegConfig
from ..likelihoods import observe_annotations
from ..method_entry import Method
from ..networks import SegmentationPredictor
from ..positive import inverse_softplus
from .common import FeatureModel, annotation_plates, as_observation, in_chunks, make_plates, random_raters
from .prob_unet import sample_channels

LATENT_DIM = 8
PRIOR_SCALE = 2.0
INITIAL_SPREAD = 8.0  # std of the raters' initial posterior means


class PiononoModel(FeatureModel):
    """p(z_i) p(y_bi | x_b, z_i): U-Net features and a per-rater latent decoded by a shared head."""

    def __init__(self, config: ProSegConfig):
        super().__init__(config)
        c = config
        self.head = SegmentationPredictor(c.feature_channels, LATENT_DIM, c.predictor_hidden,
                                          self.y_family.channels(c.num_classes))
        self.register_buffer("zero", torch.zeros(()), persistent=False)  # gives priors the device and dtype

    def foreground_probs(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``features`` (..., F, H, W) and ``z`` (..., D), broadcast -> foreground probabilities (..., H, W)."""
        return self.y_family.foreground(self.head(features, z))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        plates = make_plates(x, self.config.num_raters)
        c, pixels = self.config, x.shape[-2] * x.shape[-1]
        with plates[1], poutine.scale(scale=1 / pixels):  # the objective per pixel, as ProSeg's
            z = pyro.sample("z", dist.Normal(self.zero, PRIOR_SCALE).expand((LATENT_DIM,)).to_event(1))  # (R, D)
        logits = self.head(self.unet(x).unsqueeze(1), z)  # (B, R, H, W, K_out)
        with annotation_plates(x, c.num_raters, mask, plates):
            return observe_annotations("y", self.y_family, self.y_family.dist(logits), as_observation(y, x),
                                       c.weight_y, c.dice_weight, pixels)


class PiononoGuide(PyroModule):
    """q(z_i) = MultivariateNormal(mu_i, L_i L_i^T) for every rater ``i``."""

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config
        raters = config.num_raters
        self.loc = nn.Parameter(INITIAL_SPREAD * torch.randn(raters, LATENT_DIM))
        self.scale_diag_raw = nn.Parameter(torch.full((raters, LATENT_DIM), inverse_softplus(PRIOR_SCALE).item()))
        self.scale_offdiag = nn.Parameter(torch.zeros(raters, LATENT_DIM, LATENT_DIM))

    def rater_parameters(self) -> list[nn.Parameter]:
        """The per-rater variational parameters of q(z_i) (training takes them at a higher rate)."""
        return [self.loc, self.scale_diag_raw, self.scale_offdiag]

    def z_dist(self) -> dist.Distribution:
        """q(z): batch (R,), event (D,)."""
        scale_tril = torch.tril(self.scale_offdiag, -1) + torch.diag_embed(F.softplus(self.scale_diag_raw) + 1e-3)
        return dist.MultivariateNormal(self.loc, scale_tril=scale_tril)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        with pyro.plate("raters", self.config.num_raters, dim=-1), poutine.scale(scale=1 / (x.shape[-2] * x.shape[-1])):
            pyro.sample("z", self.z_dist())


@torch.no_grad()
def personalised(model: PiononoModel, guide: PiononoGuide, x: torch.Tensor, raters, num_samples: int
                 ) -> torch.Tensor:
    """z ~ q(z_r) for each of ``raters``: (S, B, N, H, W)."""
    raters = list(raters)
    features = model.unet(x)[None, :, None]  # (1, B, 1, F, H, W)
    q = guide.z_dist()
    return in_chunks(num_samples, x, len(raters), sample_channels(model.config), lambda size: model.foreground_probs(
        features, q.sample((size,))[:, None, raters]))


@torch.no_grad()
def prior(model: PiononoModel, guide: PiononoGuide, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """A uniformly drawn rater per sample and image, z ~ q(z_rater): (S, B, H, W)."""
    features = model.unet(x)[None]  # (1, B, F, H, W)
    q = guide.z_dist()

    def draw(size: int) -> torch.Tensor:
        chosen = random_raters(size, x.shape[0], model.config.num_raters, x.device)  # (s, B)
        z = dist.MultivariateNormal(q.loc[chosen], scale_tril=q.scale_tril[chosen]).sample()  # (s, B, D)
        return model.foreground_probs(features, z)

    return in_chunks(num_samples, x, 1, sample_channels(model.config), draw)


METHOD = Method("pionono", lambda config: (PiononoModel(config), PiononoGuide(config)), personalised, prior,
                "Schmidt et al., Probabilistic modeling of inter- and intra-observer variability in medical "
                "image segmentation, ICCV 2023")
