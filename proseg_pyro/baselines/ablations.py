"""The paper's Table 2 ablations: ProSeg without ``tau`` and ProSeg without ``z``.

Both compose the parts of :class:`~proseg_pyro.model.ProSegModel` and
:class:`~proseg_pyro.guide.ProSegGuide` for the latents they keep (the same networks and factories);
every other choice (priors, likelihoods, weights, the per-pixel objective) comes from the same config.

* ``proseg_no_tau``: no rater preference. The rater's style must live in per-rater ``z`` heads
  (``q(z_i | x)`` with one head per rater, whatever the config's ``z_head``); the predictor sees
  ``z`` only (its tau input is held at zero, which removes it: that layer has no bias), and the
  ``tau``/``r`` sites are gone. Prior samples pick a head uniformly at random.
* ``proseg_no_z``: no image-ambiguity latent. The predictor sees ``tau`` and deterministic U-Net
  features of the image; the ``z``/``x`` sites are gone (the image reconstruction needs ``z``).
  Personalised samples vary only through ``tau ~ q(tau | r)``, prior samples through tau* drawn
  as ProSeg's are (:func:`~proseg_pyro.inference.sampling_tau`; the rater classifier is still
  trained through the ``r`` site).
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule

from ..config import ProSegConfig
from ..guide import AmbiguityPosterior, PreferencePosterior, ambiguity_networks
from ..inference import sampling_tau
from ..likelihoods import Y_LIKELIHOODS, observe_annotations
from ..method_entry import Method
from ..model import (AmbiguityFactories, AnnotationFactories, PreferenceFactories, make_annotation_predictor,
                     make_image_decoder, make_rater_classifier)
from ..networks import make_backbone
from .common import annotation_plates, as_observation, in_chunks, random_raters


def _rater_ids(x: torch.Tensor, raters: int) -> torch.Tensor:
    return torch.arange(raters, device=x.device).expand(x.shape[0], raters)


def _channels(config: ProSegConfig, z_channels: int) -> int:
    """Values per pixel and sample: ``z`` (if any), the predictor's hidden layer and the classes."""
    return z_channels + config.predictor_hidden + config.num_classes


# --- no tau ----------------------------------------------------------------------------------------
class NoTauModel(AmbiguityFactories, AnnotationFactories, PyroModule):
    """p(z) p(x | z_i) p(y | z_i): ProSeg without the rater preference ``tau`` (and the ``r`` site)."""

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = c = config
        self.image_decoder = make_image_decoder(c)
        self.y_family = Y_LIKELIHOODS[c.y_likelihood]
        self.predictor = make_annotation_predictor(c, self.y_family, c.z_channels)
        self.register_buffer("zero", torch.zeros(()), persistent=False)  # gives priors the device and dtype

    def no_tau(self, z: torch.Tensor) -> torch.Tensor:
        """A zero preference for ``z`` (..., Cz, H, W): (..., T); it contributes nothing to the predictor."""
        return z.new_zeros(*z.shape[:-3], self.config.tau_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        c = self.config
        batch, pixels = x.shape[0], x.shape[-2] * x.shape[-1]
        with annotation_plates(x, c.num_raters, mask):
            with poutine.scale(scale=c.beta_z / pixels):
                z = pyro.sample("z", self.z_prior(*x.shape[-2:]))
            with poutine.scale(scale=c.weight_x / (x.shape[-3] * pixels)):
                pyro.sample("x", self.x_likelihood(z), obs=x.unsqueeze(1).expand(batch, c.num_raters, *x.shape[1:]))
            return observe_annotations("y", self.y_family, self.y_likelihood(self.no_tau(z), z), as_observation(y, x),
                                       c.weight_y, c.dice_weight, pixels)


class NoTauGuide(AmbiguityPosterior, PyroModule):
    """q(z_i | x) from per-rater heads; no ``tau``."""

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config.replace(z_head="per_rater")
        self.backbone, self.z_heads = ambiguity_networks(self.config)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        pixels = x.shape[-2] * x.shape[-1]
        with annotation_plates(x, self.config.num_raters, mask), poutine.scale(scale=self.config.beta_z / pixels):
            pyro.sample("z", self.z_dist(x))


@torch.no_grad()
def no_tau_personalised(model: NoTauModel, guide: NoTauGuide, x: torch.Tensor, raters, num_samples: int
                        ) -> torch.Tensor:
    """z ~ q(z_r | x) from rater r's head: (S, B, N, H, W)."""
    raters = list(raters)
    z_q = guide.z_dist(x, torch.as_tensor(raters, device=x.device))  # batch (B, N)

    def draw(size: int) -> torch.Tensor:
        z = z_q.sample((size,))  # (s, B, N, Cz, H, W)
        return model.foreground_probs(model.no_tau(z), z)

    return in_chunks(num_samples, x, len(raters), _channels(model.config, model.config.z_channels), draw)


@torch.no_grad()
def no_tau_prior(model: NoTauModel, guide: NoTauGuide, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """A uniformly drawn head per sample and image, z ~ q(z_head | x): (S, B, H, W)."""
    z_q = guide.z_dist(x)  # batch (B, R)
    loc, scale = z_q.base_dist.loc, z_q.base_dist.scale

    def draw(size: int) -> torch.Tensor:
        head = random_raters(size, x.shape[0], model.config.num_raters, x.device)
        images = torch.arange(x.shape[0], device=x.device).expand_as(head)
        z = dist.Normal(loc[images, head], scale[images, head]).sample()  # (s, B, Cz, H, W)
        return model.foreground_probs(model.no_tau(z), z)

    return in_chunks(num_samples, x, 1, _channels(model.config, model.config.z_channels), draw)


# --- no z ------------------------------------------------------------------------------------------
class NoZModel(PreferenceFactories, AnnotationFactories, PyroModule):
    """p(tau) p(r | tau) p(y | tau, features(x)): ProSeg without the image-ambiguity latent ``z``."""

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = c = config
        self.classifier = make_rater_classifier(c)
        self.y_family = Y_LIKELIHOODS[c.y_likelihood]
        self.backbone = make_backbone(c, c.feature_channels)
        self.predictor = make_annotation_predictor(c, self.y_family, c.feature_channels)
        self.register_buffer("zero", torch.zeros(()), persistent=False)  # gives priors the device and dtype

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        c = self.config
        features = self.backbone(x).unsqueeze(1)  # (B, 1, F, H, W)
        with annotation_plates(x, c.num_raters, mask):
            with poutine.scale(scale=c.beta_tau):
                tau = pyro.sample("tau", self.tau_prior())
            with poutine.scale(scale=c.weight_r):
                pyro.sample("r", self.r_likelihood(tau), obs=_rater_ids(x, c.num_raters))
            return observe_annotations("y", self.y_family, self.y_likelihood(tau, features), as_observation(y, x),
                                       c.weight_y, c.dice_weight, x.shape[-2] * x.shape[-1])


class NoZGuide(PreferencePosterior, PyroModule):
    """q(tau_i | r = i) only."""

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config
        self.add_tau_parameters(config.num_raters + len(config.enrolled_raters))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        rater_ids = torch.arange(self.config.num_raters, device=x.device)
        with annotation_plates(x, self.config.num_raters, mask), poutine.scale(scale=self.config.beta_tau):
            pyro.sample("tau", self.tau_dist(rater_ids))


@torch.no_grad()
def no_z_personalised(model: NoZModel, guide: NoZGuide, x: torch.Tensor, raters, num_samples: int) -> torch.Tensor:
    """tau ~ q(tau | r) with the image's features: (S, B, N, H, W)."""
    raters = list(raters)
    tau_q = guide.tau_dist(torch.as_tensor(raters, device=x.device))  # batch (N,)
    features = model.backbone(x)[:, None]  # (B, 1, F, H, W)
    return in_chunks(num_samples, x, len(raters), _channels(model.config, 0), lambda size: model.foreground_probs(
        tau_q.sample((size, x.shape[0])), features))


@torch.no_grad()
def no_z_prior(model: NoZModel, guide: NoZGuide, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """tau* drawn as ProSeg's prior samples draw it (:func:`~proseg_pyro.inference.sampling_tau`) with
    the image's features: (S, B, H, W)."""
    config = model.config
    tau_p = sampling_tau(model, guide, None, x)
    features = model.backbone(x)  # (B, F, H, W)
    return in_chunks(num_samples, x, 1, _channels(config, 0), lambda size: model.foreground_probs(
        tau_p.sample((size, x.shape[0])), features))


METHODS = (
    Method("proseg_no_tau", lambda config: (NoTauModel(config), NoTauGuide(config)), no_tau_personalised,
           no_tau_prior, "ProSeg ablation (the paper's Table 2): no rater preference tau"),
    Method("proseg_no_z", lambda config: (NoZModel(config), NoZGuide(config)), no_z_personalised, no_z_prior,
           "ProSeg ablation (the paper's Table 2): no image-ambiguity latent z"),
)
