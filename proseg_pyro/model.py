"""The ProSeg generative model (the paper's Fig. 2(d)) written as a Pyro program."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule

from .config import ProSegConfig
from .normal import FusedNormal
from .likelihoods import Y_LIKELIHOODS, AnnotationLikelihood, observe_annotations
from .networks import ImageDecoder, RaterClassifier, SegmentationPredictor
from .tau_families import TAU_FAMILIES

pyro.settings.set(module_local_params=True)


# --- the factories of the model's parts: each model composes those of the latents it has ----------
class PreferenceFactories:
    """p(tau) and p(r | tau), for a module holding ``config``, ``zero`` (a scalar buffer giving priors
    their device and dtype) and ``classifier`` (a :class:`~proseg_pyro.networks.RaterClassifier`)."""

    config: ProSegConfig
    zero: torch.Tensor
    classifier: RaterClassifier

    def tau_prior(self) -> dist.Distribution:
        """p(tau) of the config's tau family: event (T,)."""
        return TAU_FAMILIES[self.config.tau_prior].prior(self.config.tau_dim, self.config.alpha0, self.zero)

    def r_likelihood(self, tau: torch.Tensor) -> dist.Distribution:
        """p(r | tau): ``tau`` (..., T) -> Categorical over the R raters, batch (...)."""
        return dist.Categorical(logits=self.classifier(tau))


class AmbiguityFactories:
    """p(z) and p(x | z), for a module holding ``config``, ``zero`` and ``image_decoder`` (an
    :class:`~proseg_pyro.networks.ImageDecoder`)."""

    config: ProSegConfig
    zero: torch.Tensor
    image_decoder: ImageDecoder

    def z_prior(self, height: int, width: int) -> dist.Distribution:
        """p(z) = Normal(0, I): event (Cz, H, W)."""
        shape = (self.config.z_channels, height, width)
        return FusedNormal(self.zero, 1.0).expand(shape).to_event(3)

    def x_likelihood(self, z: torch.Tensor) -> dist.Distribution:
        """p(x | z_i): ``z`` (..., R, Cz, H, W) -> batch (..., R), event (C, H, W)."""
        return FusedNormal(self.image_decoder(z), self.config.x_sigma).to_event(3)


class AnnotationFactories:
    """p(y | tau, z) and its probabilities, for a module holding ``config``, ``y_family`` (the
    config's annotation likelihood) and ``predictor`` (a :class:`~proseg_pyro.networks.SegmentationPredictor`,
    see :func:`make_annotation_predictor`)."""

    config: ProSegConfig
    y_family: AnnotationLikelihood
    predictor: SegmentationPredictor

    def y_likelihood(self, tau: torch.Tensor, z: torch.Tensor, style_offset: torch.Tensor | None = None) -> dist.Distribution:
        """p(y | tau, z): ``tau`` (..., T), ``z`` (..., Cz, H, W), ``style_offset`` None or (..., hidden)
        -> batch (...), event (H, W)."""
        return self.y_family.dist(self.predictor(z, tau, style_offset))

    def class_probs(self, tau: torch.Tensor, z: torch.Tensor, style_offset: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of p(y | tau, z) per pixel: class probabilities (..., H, W, K)."""
        return self.y_family.probs(self.predictor(z, tau, style_offset))

    def foreground_probs(self, tau: torch.Tensor, z: torch.Tensor, style_offset: torch.Tensor | None = None) -> torch.Tensor:
        """Probability of any class but the background per pixel under p(y | tau, z): (..., H, W).

        Where the likelihood's foreground logit is one combination of the logits (two classes), the
        predictor computes that combination alone."""
        readout = self.y_family.foreground_readout(self.config.num_classes)
        if readout is None:
            return self.y_family.foreground(self.predictor(z, tau, style_offset))
        return torch.sigmoid(self.predictor(z, tau, style_offset, readout=z.new_tensor(readout)))


def make_annotation_predictor(config: ProSegConfig, family: AnnotationLikelihood,
                              in_channels: int) -> SegmentationPredictor:
    """The predictor of ``family``'s logits from a map of ``in_channels`` (``z`` or image features) and tau."""
    return SegmentationPredictor(in_channels, config.tau_dim, config.predictor_hidden,
                                 family.channels(config.num_classes), config.predictor_kernel)


def make_image_decoder(config: ProSegConfig) -> ImageDecoder:
    """p(x | z_i)'s mean: a per-rater remap of ``z`` and a shared decoder to the image's channels."""
    return ImageDecoder(config.num_raters, config.z_channels, config.x_decoder_channels, config.in_channels)


def make_rater_classifier(config: ProSegConfig) -> RaterClassifier:
    """p(r | tau)'s logits over the R raters."""
    return RaterClassifier(config.tau_dim, config.classifier_hidden, config.num_raters)


class ProSegModel(PreferenceFactories, AmbiguityFactories, AnnotationFactories, PyroModule):
    """p(x, r, y, tau, z) for B images and R rater slots.

    For every image ``b`` (plate ``images``) and rater slot ``i`` (plate ``raters``)::

        tau_bi ~ Dirichlet(alpha0 * 1_T)                          rater preference, event (T,)
        z_bi   ~ Normal(0, I)                                     image ambiguity, event (Cz, H, W)
        x_b    ~ Normal(decoder_i(z_bi), sigma^2 I)               observed image, event (C, H, W)
        r_bi   ~ Categorical(softmax(classifier(tau_bi)))         observed rater id, = i
        y_bi   ~ Categorical(softmax(predictor(z_bi, tau_bi)))    observed annotation, event (H, W)

    Slots with ``mask[b, i] = False`` (rater ``i`` did not annotate image ``b``) contribute nothing.
    The objective is per pixel, so that its balance does not depend on the image size: the terms
    summed over pixels (``z``'s KL, ``log p(y)``) are divided by ``H W`` and ``log p(x)`` by ``C H W``;
    ``tau``'s KL and ``log p(r)`` count once per slot. With ``dice_weight`` > 0 a soft-Dice
    pseudo-likelihood factor ``"y_dice"`` joins ``y`` (:func:`~proseg_pyro.likelihoods.observe_annotations`).
    A rater enrolled after training (:mod:`proseg_pyro.enrol`) also has a style offset ``delta``
    (hidden,) that moves tau's input to the predictor, ``predictor(z, tau, delta)``: the frozen
    predictor only learned the tau points of the training raters (whose ``delta`` is 0).
    The KL weights ``beta_tau``, ``beta_z`` and likelihood weights ``weight_x/r/y`` of the config
    scale the sites (the guide applies the same ``beta`` to its sites). Each prior and likelihood
    is one ``*_prior``/``*_likelihood`` method of the factories the model composes: override one in
    a subclass, or pick a registry entry by name in the config, to test an alternative.
    """

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config
        c = config
        self.image_decoder = make_image_decoder(c)
        self.classifier = make_rater_classifier(c)
        self.y_family = Y_LIKELIHOODS[c.y_likelihood]
        self.predictor = make_annotation_predictor(c, self.y_family, c.z_channels)
        self.register_buffer("zero", torch.zeros(()), persistent=False)  # gives priors the device and dtype
        # (E, hidden): the style offsets of the E enrolled raters, written by enrolment (and saved
        # only when there are some, so that checkpoints of models without any stay as they were)
        self.register_buffer("enrolled_offsets", torch.zeros(len(c.enrolled_raters), c.predictor_hidden),
                             persistent=bool(c.enrolled_raters))

    def style_offsets(self, raters: torch.Tensor) -> torch.Tensor | None:
        """``delta`` of rater slots ``raters`` (N,) long: (N, hidden), 0 for training raters; None
        when all are training raters."""
        enrolled = raters - self.config.num_raters
        if not bool((enrolled >= 0).any()):
            return None
        zero = self.enrolled_offsets.new_zeros(1, self.enrolled_offsets.shape[-1])
        return torch.cat([zero, self.enrolled_offsets])[(enrolled + 1).clamp_min(0)]

    # --- the generative process ------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        """``x`` (B, C, H, W) float, ``y`` (B, R, H, W) long or None, ``mask`` (B, R) bool or None."""
        c = self.config
        batch, raters = x.shape[0], c.num_raters
        pixels = x.shape[-2] * x.shape[-1]
        if mask is None:
            mask = torch.ones(batch, raters, dtype=torch.bool, device=x.device)
        rater_ids = torch.arange(raters, device=x.device).expand(batch, raters)
        with pyro.plate("images", batch, dim=-2), pyro.plate("raters", raters, dim=-1), poutine.mask(mask=mask):
            with poutine.scale(scale=c.beta_tau):
                tau = pyro.sample("tau", self.tau_prior())
            with poutine.scale(scale=c.beta_z / pixels):
                z = pyro.sample("z", self.z_prior(*x.shape[-2:]))
            with poutine.scale(scale=c.weight_x / (x.shape[-3] * pixels)):
                pyro.sample("x", self.x_likelihood(z), obs=x.unsqueeze(1).expand(batch, raters, *x.shape[1:]))
            with poutine.scale(scale=c.weight_r):
                pyro.sample("r", self.r_likelihood(tau), obs=rater_ids)
            return observe_annotations("y", self.y_family, self.y_likelihood(tau, z),
                                       None if y is None else y.to(x.dtype), c.weight_y, c.dice_weight, pixels)
