"""``cm_global`` and ``cm_pixel``: a true-segmentation network plus per-rater confusion matrices.

* ``cm_global``: Tanno et al., "Learning from noisy labels by regularized estimation of annotator
  confusion", CVPR 2019 -- one K x K confusion matrix per rater, shared by all pixels and images.
* ``cm_pixel``: Zhang et al., "Disentangling human error from the ground truth in segmentation of
  medical images", NeurIPS 2020 -- a K x K matrix per rater and pixel, predicted from the image.

Model, per image ``b``, rater ``i`` and pixel ``p``::

    p_b(p)        = softmax(seg(x_b))(p)                       estimated true class probabilities (K,)
    y_bi(p)       ~ Categorical(p_b(p) @ CM_i(p))               CM_i[k, j] = P(rater says j | truth k)
    factor        -alpha * sum_p trace(CM_i(p))                 the trace regulariser

Each ``CM`` is row-stochastic (softmax over its last axis), initialised near the identity. The
trace penalty (alpha = 0.1, the released code's default) pushes the raters to absorb as much
disagreement as they can, which is what separates the raters' biases from the true segmentation.
No latent: the guide samples nothing. Personalised predictions are ``p_b @ CM_i`` (deterministic,
repeated over samples); prior samples pick a rater at random per sample. Departures: the shared
U-Net backbone; the pixel-wise matrices come from a 1x1 conv on the backbone's last features
(Zhang et al. use a separate decoder branch); losses are summed over pixels (the originals
average), with the trace term summed alike so its relative weight is the original one.
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from ..config import ProSegConfig
from ..likelihoods import Y_LIKELIHOODS, foreground, observe_annotations
from ..networks import make_backbone, run_flat
from .common import EmptyGuide, annotation_plates, as_observation, deterministic_method

TRACE_WEIGHT = 0.1  # alpha of the trace regulariser
IDENTITY_LOGIT = 3.0  # initial diagonal logit: each matrix starts at ~0.95 on the diagonal for K = 2


class ConfusionModel(PyroModule):
    """True-segmentation U-Net with global (``pixelwise=False``) or pixel-wise rater confusion matrices."""

    def __init__(self, config: ProSegConfig, pixelwise: bool):
        super().__init__()
        self.config = config
        c = config
        classes, raters = c.num_classes, c.num_raters
        self.backbone = make_backbone(c, c.feature_channels)
        self.seg_head = nn.Conv2d(c.feature_channels, classes, 1)
        identity = IDENTITY_LOGIT * torch.eye(classes).expand(raters, classes, classes)
        if pixelwise:
            self.cm_head = nn.Conv2d(c.feature_channels, raters * classes * classes, 1)
            with torch.no_grad():
                self.cm_head.weight.mul_(0.1)
                self.cm_head.bias.copy_(identity.flatten())
        else:
            self.cm_logits = nn.Parameter(identity.clone())
        self.pixelwise = pixelwise

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """True class probabilities (B, 1, H, W, K) and confusion matrices (B, R, H, W, K, K) (pixel-wise)
        or (R, 1, 1, K, K) (global), rows summing to one."""
        features = run_flat(self.backbone, x)
        true_probs = run_flat(self.seg_head, features).softmax(-3).movedim(-3, -1).unsqueeze(-4)
        k, r = self.config.num_classes, self.config.num_raters
        if self.pixelwise:
            logits = run_flat(self.cm_head, features)
            logits = logits.reshape(*logits.shape[:-3], r, k, k, *logits.shape[-2:]).movedim((-4, -3), (-2, -1))
        else:
            logits = self.cm_logits[:, None, None]
        return true_probs, logits.softmax(-1)

    def confusion(self, x: torch.Tensor) -> torch.Tensor:
        """The confusion matrices of ``x`` (B, C, H, W): (B, R, H, W, K, K) or (R, 1, 1, K, K)."""
        return self.predict(x)[1]

    def rater_class_probs(self, x: torch.Tensor) -> torch.Tensor:
        """P(rater i labels pixel p as class j): (B, R, H, W, K)."""
        true_probs, cm = self.predict(x)
        return torch.einsum("...k,...kj->...j", true_probs, cm)

    def rater_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Foreground probability in each rater's style: (B, R, H, W)."""
        return foreground(self.rater_class_probs(x))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        true_probs, cm = self.predict(x)
        probs = torch.einsum("...k,...kj->...j", true_probs, cm)
        trace = torch.diagonal(cm, dim1=-2, dim2=-1).sum(-1)  # (B, R, H, W) or (R, 1, 1)
        trace = trace.expand(*trace.shape[:-2], *x.shape[-2:]).mean((-2, -1))  # per pixel, as ``y``
        c = self.config
        with annotation_plates(x, c.num_raters, mask):
            pyro.factor("trace", -TRACE_WEIGHT * trace)
            return observe_annotations("y", Y_LIKELIHOODS["categorical"], dist.Categorical(probs=probs).to_event(2),
                                       as_observation(y, x), c.weight_y, c.dice_weight, x.shape[-2] * x.shape[-1])


METHODS = (
    deterministic_method("cm_global", lambda config: (ConfusionModel(config, False), EmptyGuide(config)),
                         "Tanno et al., Learning from noisy labels by regularized estimation of annotator "
                         "confusion, CVPR 2019"),
    deterministic_method("cm_pixel", lambda config: (ConfusionModel(config, True), EmptyGuide(config)),
                         "Zhang et al., Disentangling human error from the ground truth in segmentation of "
                         "medical images, NeurIPS 2020"),
)
