"""``unet``: one U-Net per rater, each trained on that rater's annotations only (the paper's U-Net (A_i) rows).

Ronneberger, Fischer and Brox, "U-Net: Convolutional networks for biomedical image segmentation",
MICCAI 2015; used per rater as the personalisation reference in the ProSeg and D-Persona papers.

Model: ``y_bi ~ Categorical(softmax(UNet_i(x_b)))`` under the images x raters plates; no latent,
so the guide samples nothing and the ELBO is the summed log-likelihood (cross-entropy). The R
networks are independent (rater ``i``'s loss only reaches ``UNet_i``), as R separate trainings.
Deterministic: personalised samples repeat each rater's prediction; prior samples pick a rater at
random per sample. Departures: the shared :class:`~proseg_pyro.networks.UNet` (GroupNorm, the
config's width and depth) rather than the original's BatchNorm U-Net, trained jointly in one loop.
"""
from __future__ import annotations

import torch
from pyro.nn import PyroModule
from torch import nn

from ..config import ProSegConfig
from ..likelihoods import Y_LIKELIHOODS, observe_annotations
from ..networks import make_backbone
from .common import EmptyGuide, annotation_plates, as_observation, deterministic_method


class DirectSegmentation(PyroModule):
    """Annotations straight from the image, no latent: ``y_bi ~ p(y | logits(x_b)_i)``.

    Subclasses build their networks and define :meth:`logits`: (B, R, H, W, K_out), or
    (B, 1, H, W, K_out) for one prediction shared by every rater.
    """

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config
        self.y_family = Y_LIKELIHOODS[config.y_likelihood]

    def _unet(self) -> nn.Module:
        c = self.config
        return make_backbone(c, self.y_family.channels(c.num_classes))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rater_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Foreground probability in each rater's style: (B, R, H, W)."""
        probs = self.y_family.foreground(self.logits(x))
        return probs.expand(-1, self.config.num_raters, -1, -1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        c, logits = self.config, self.logits(x)
        with annotation_plates(x, c.num_raters, mask):
            return observe_annotations("y", self.y_family, self.y_family.dist(logits), as_observation(y, x),
                                       c.weight_y, c.dice_weight, x.shape[-2] * x.shape[-1])


class PerRaterUNet(DirectSegmentation):
    """R U-Nets, network ``i`` predicting rater ``i``'s annotation: logits (B, R, H, W, K_out)."""

    def __init__(self, config: ProSegConfig):
        super().__init__(config)
        self.nets = nn.ModuleList([self._unet() for _ in range(config.num_raters)])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, H, W) -> (B, R, H, W, K_out)."""
        return torch.stack([net(x) for net in self.nets], dim=1).movedim(2, -1)


METHOD = deterministic_method(
    "unet", lambda config: (PerRaterUNet(config), EmptyGuide(config)),
    "Ronneberger et al., U-Net: Convolutional networks for biomedical image segmentation, MICCAI 2015 "
    "(one network per rater)")
