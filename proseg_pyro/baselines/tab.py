"""``tab``: annotator-bias-aware decoding with a transformer and per-query stochastic logits.

Liao et al., "Transformer-based annotation bias-aware medical image segmentation", MICCAI 2023.

As in TAB, R + 1 learned queries (query 0 for the raters' shared view, query ``i`` for rater
``i``) attend through a transformer to the image's features; each query's attention map over the
pixels, with the features, is decoded into a distribution over that query's logit map: a
low-rank multivariate Gaussian ``eta ~ N(mu, diag(sigma^2) + F F^T)`` (rank 5, one draw of the
rank-5 factor weights per map, so the noise is spatially correlated). The model observes every
annotation twice, given a fresh draw of the shared query's logits (site ``y_global``) and of its
rater's query's logits (site ``y``, weight lambda = 1), which is TAB's loss; ``eta`` is drawn by
reparameterisation inside the model, so the objective is E_eta[log p(y | eta)] and the guide
samples nothing.

Personalised samples draw the rater query's logits; prior samples draw the shared query's logits.
Departures, to train on a CPU: the shared U-Net as the CNN (TAB: a ResNet with a DETR-style
FPN mask head), one encoder and one decoder layer of width 32 and 4 heads over tokens average-pooled
by 4, image coordinates appended to the tokens instead of sinusoidal position codes, attention
maps rescaled to mean 1, a ``ConvBlock`` mask head at full resolution, softplus scales.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ProSegConfig
from ..likelihoods import observe_annotations
from ..method_entry import Method
from ..networks import ConvBlock, run_flat
from .common import FeatureModel, EmptyGuide, annotation_plates, as_observation, in_chunks

WIDTH = 32  # transformer width
HEADS = 4
RANK = 5  # rank of the logit covariance's low-rank part
TOKEN_STRIDE = 4  # average pooling of the features into transformer tokens
RATER_WEIGHT = 1.0  # lambda: weight of the rater queries' term


def sample_logits(loc: torch.Tensor, std: torch.Tensor, factor: torch.Tensor,
                  sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
    """Reparameterised draws of low-rank Gaussian logit maps.

    ``loc``, ``std`` (..., H, W, O), ``factor`` (..., H, W, O, RANK) -> (*sample_shape, ..., H, W, O).
    """
    noise = torch.randn(*sample_shape, *loc.shape, device=loc.device, dtype=loc.dtype)
    weights = torch.randn(*sample_shape, *loc.shape[:-3], 1, 1, 1, RANK, device=loc.device, dtype=loc.dtype)
    return loc + std * noise + (factor * weights).sum(-1)


class TABModel(FeatureModel):
    """Transformer queries (shared + one per rater) decoded into low-rank Gaussian logit maps."""

    def __init__(self, config: ProSegConfig):
        super().__init__(config)
        c = config
        self.outputs = self.y_family.channels(c.num_classes)
        self.token_proj = nn.Linear(c.feature_channels + 2, WIDTH)
        self.transformer = nn.Transformer(WIDTH, HEADS, num_encoder_layers=1, num_decoder_layers=1,
                                          dim_feedforward=2 * WIDTH, dropout=0.0, batch_first=True)
        self.queries = nn.Parameter(0.1 * torch.randn(c.num_raters + 1, WIDTH))
        self.query_proj = nn.Linear(WIDTH, WIDTH)
        self.key_proj = nn.Conv2d(c.feature_channels, WIDTH, 1)
        self.mask_head = nn.Sequential(ConvBlock(c.feature_channels + HEADS, WIDTH),
                                       nn.Conv2d(WIDTH, self.outputs * (2 + RANK), 1))

    def _tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features with their (y, x) coordinates: (B, F, H, W) -> (B, L, WIDTH)."""
        pooled = F.avg_pool2d(features, TOKEN_STRIDE, ceil_mode=True)
        height, width = pooled.shape[-2:]
        grid = torch.stack(torch.meshgrid(torch.linspace(-1, 1, height, device=features.device),
                                          torch.linspace(-1, 1, width, device=features.device), indexing="ij"))
        pooled = torch.cat([pooled, grid.expand(len(pooled), -1, -1, -1).to(pooled.dtype)], dim=1)
        return self.token_proj(pooled.flatten(2).transpose(1, 2))

    def logit_distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, C, H, W) -> per query ``loc``, ``std`` (B, Q, H, W, O) and ``factor`` (B, Q, H, W, O, RANK);
        query 0 is the shared one, query ``i + 1`` rater ``i``'s."""
        features = self.unet(x)
        batch, queries = x.shape[0], self.queries.shape[0]
        decoded = self.transformer(self._tokens(features), self.queries.expand(batch, -1, -1))  # (B, Q, WIDTH)
        q = self.query_proj(decoded).unflatten(-1, (HEADS, WIDTH // HEADS))
        k = self.key_proj(features).unflatten(1, (HEADS, WIDTH // HEADS))
        attention = torch.einsum("bqnc,bnchw->bqnhw", q, k) * (WIDTH // HEADS) ** -0.5
        pixels = math.prod(x.shape[-2:])
        attention = attention.flatten(-2).softmax(-1).unflatten(-1, x.shape[-2:]) * pixels
        head_in = torch.cat([features.unsqueeze(1).expand(-1, queries, -1, -1, -1), attention], dim=2)
        out = run_flat(self.mask_head, head_in).unflatten(2, (2 + RANK, self.outputs)).movedim(3, -1)
        return out[:, :, 0], F.softplus(out[:, :, 1]) + 1e-3, out[:, :, 2:].movedim(2, -1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        raters = self.config.num_raters
        params = self.logit_distribution(x)
        shared = sample_logits(*(t[:, :1].expand(-1, raters, *t.shape[2:]) for t in params))  # (B, R, H, W, O)
        own = sample_logits(*(t[:, 1:] for t in params))
        observed = as_observation(y, x)
        c, pixels = self.config, x.shape[-2] * x.shape[-1]
        with annotation_plates(x, raters, mask):
            observe_annotations("y_global", self.y_family, self.y_family.dist(shared), observed, c.weight_y,
                                c.dice_weight, pixels)
            return observe_annotations("y", self.y_family, self.y_family.dist(own), observed,
                                       RATER_WEIGHT * c.weight_y, RATER_WEIGHT * c.dice_weight, pixels)


def _sample_channels(model: TABModel) -> int:
    """Values per pixel and sample: noise, logits and class probabilities."""
    return 3 * model.outputs + model.config.num_classes


@torch.no_grad()
def personalised(model: TABModel, guide: EmptyGuide, x: torch.Tensor, raters, num_samples: int) -> torch.Tensor:
    """Draws of each rater query's logits: (S, B, N, H, W)."""
    index = [rater + 1 for rater in raters]
    params = [t[:, index] for t in model.logit_distribution(x)]
    return in_chunks(num_samples, x, len(index), _sample_channels(model), lambda size: model.y_family.foreground(
        sample_logits(*params, (size,))))


@torch.no_grad()
def prior(model: TABModel, guide: EmptyGuide, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Draws of the shared query's logits: (S, B, H, W)."""
    params = [t[:, 0] for t in model.logit_distribution(x)]
    return in_chunks(num_samples, x, 1, _sample_channels(model), lambda size: model.y_family.foreground(
        sample_logits(*params, (size,))))


METHOD = Method("tab", lambda config: (TABModel(config), EmptyGuide(config)), personalised, prior,
                "Liao et al., Transformer-based annotation bias-aware medical image segmentation, MICCAI 2023")
