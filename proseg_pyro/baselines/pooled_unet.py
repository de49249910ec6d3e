"""``unet_pooled``: one U-Net trained on every rater's annotations (the usual single-label baseline).

Ronneberger, Fischer and Brox, "U-Net: Convolutional networks for biomedical image segmentation",
MICCAI 2015. Model: ``y_bi ~ Categorical(softmax(UNet(x_b)))`` for every rater slot ``i``: the
same network explains all annotations, so it learns their pixel-wise average and has neither
rater styles nor diversity. Every personalised and prior sample is that one prediction.
"""
from __future__ import annotations

import pyro
import torch
from pyro import poutine
from pyro.nn import PyroModule

from ..config import ProSegConfig
from ..likelihoods import Y_LIKELIHOODS
from ..networks import UNet
from .common import EmptyGuide, annotation_plates, as_observation, deterministic_method, foreground


class PooledUNet(PyroModule):
    """One U-Net for all raters: logits (B, 1, H, W, K_out), broadcast over the rater plate."""

    def __init__(self, config: ProSegConfig):
        super().__init__()
        self.config = config
        self.y_family = Y_LIKELIHOODS[config.y_likelihood]
        self.net = UNet(config.in_channels, self.y_family.channels(config.num_classes), config.base_channels,
                        config.depth)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, H, W) -> (B, 1, H, W, K_out)."""
        return self.net(x).movedim(1, -1).unsqueeze(1)

    def rater_probs(self, x: torch.Tensor) -> torch.Tensor:
        """The same foreground probability for every rater: (B, R, H, W)."""
        probs = foreground(self.y_family.probs(self.logits(x)))
        return probs.expand(-1, self.config.num_raters, -1, -1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        logits = self.logits(x)
        with annotation_plates(x, self.config.num_raters, mask), poutine.scale(scale=self.config.weight_y):
            return pyro.sample("y", self.y_family.dist(logits), obs=as_observation(y, x))


METHOD = deterministic_method(
    "unet_pooled", lambda config: (PooledUNet(config), EmptyGuide(config)),
    "Ronneberger et al., U-Net: Convolutional networks for biomedical image segmentation, MICCAI 2015 "
    "(one network trained on all annotations)")
