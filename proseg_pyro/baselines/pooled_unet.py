"""``unet_pooled``: one U-Net trained on every rater's annotations (the usual single-label baseline).

Ronneberger, Fischer and Brox, "U-Net: Convolutional networks for biomedical image segmentation",
MICCAI 2015. Model: ``y_bi ~ Categorical(softmax(UNet(x_b)))`` for every rater slot ``i``: the
same network explains all annotations, so it learns their pixel-wise average and has neither
rater styles nor diversity. Every personalised and prior sample is that one prediction.
"""
from __future__ import annotations

import torch

from ..config import ProSegConfig
from .common import EmptyGuide, deterministic_method
from .unet import DirectSegmentation


class PooledUNet(DirectSegmentation):
    """One U-Net for all raters: logits (B, 1, H, W, K_out), broadcast over the rater plate."""

    def __init__(self, config: ProSegConfig):
        super().__init__(config)
        self.net = self._unet()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, H, W) -> (B, 1, H, W, K_out)."""
        return self.net(x).movedim(1, -1).unsqueeze(1)


METHOD = deterministic_method(
    "unet_pooled", lambda config: (PooledUNet(config), EmptyGuide(config)),
    "Ronneberger et al., U-Net: Convolutional networks for biomedical image segmentation, MICCAI 2015 "
    "(one network trained on all annotations)")
