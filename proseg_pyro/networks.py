"""Plain ``nn.Module`` building blocks shared by ProSeg and the compared methods.

Every network takes extra leading batch dimensions (``(..., C, H, W)``): they are flattened, the
network runs, and the result is reshaped back, so vectorised sampling (a leading sample dimension)
needs no Python loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .positive import inverse_softplus


def run_flat(module: nn.Module, x: torch.Tensor, event_dims: int = 3, channels_last: bool = False) -> torch.Tensor:
    """Apply ``module`` to ``x`` (..., *event) by flattening the leading dims into one batch dim.

    ``channels_last`` hands ``module`` its (N, C, H, W) input in channels-last memory: convolutions
    with few channels run 2-3x faster that way on a CPU (the values are the same up to rounding).
    """
    lead = x.shape[:-event_dims]
    flat = x.reshape(-1, *x.shape[-event_dims:])
    out = module(flat.contiguous(memory_format=torch.channels_last) if channels_last else flat)
    return out.reshape(*lead, *out.shape[1:])


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: statistics do not depend on the batch, so a data-parallel run and a
    # single process compute the same function and evaluation matches training.
    return nn.GroupNorm(min(4, channels), channels)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions with GroupNorm and ReLU: (N, C_in, H, W) -> (N, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1), _norm(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1), _norm(out_channels), nn.ReLU(inplace=True),
        )


class Backbone(nn.Module):
    """A dense network (..., C_in, H, W) -> (..., C_out, H, W) defined by ``_forward`` on (N, C_in, H, W).

    With ``checkpoint`` a pass that records gradients keeps only the input and recomputes the
    activations in the backward pass: the same gradients, less peak memory, one more forward pass.
    """

    def __init__(self, checkpoint: bool = False):
        super().__init__()
        self.checkpoint = checkpoint

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(run_flat, self._forward, x, use_reentrant=False,
                                                     preserve_rng_state=False)
        return run_flat(self._forward, x)


def _decode(x: torch.Tensor, skips: list[torch.Tensor], blocks: nn.ModuleList) -> torch.Tensor:
    """U-Net decoder: upsample ``x`` to each skip's size, concatenate, run that level's block."""
    for block, skip in zip(blocks, skips):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = block(torch.cat([x, skip], dim=1))
    return x


class UNet(Backbone):
    """U-Net: (..., C_in, H, W) -> (..., C_out, H, W), ``depth`` poolings, widths ``base * 2**level``."""

    def __init__(self, in_channels: int, out_channels: int, base: int = 16, depth: int = 3,
                 checkpoint: bool = False):
        super().__init__(checkpoint)
        widths = [base * 2 ** level for level in range(depth + 1)]
        self.down = nn.ModuleList([ConvBlock(in_channels, widths[0])] +
                                  [ConvBlock(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([ConvBlock(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        return self.head(_decode(x, list(reversed(skips[:-1])), self.up))


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions and a shortcut (a strided 1x1 where the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False), _norm(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False), _norm(out_channels))
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), _norm(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetUNet(Backbone):
    """A U-Net on a ResNet-34 encoder, the paper-sized backbone: (..., C_in, H, W) -> (..., C_out, H, W),
    H and W multiples of 32, ~24 M parameters.

    Encoder as torchvision's ``resnet34`` (7x7 stride-2 stem, 3x3 max pool, 3/4/6/3 basic blocks of
    64/128/256/512 channels), with GroupNorm for BatchNorm (statistics independent of the batch, as
    every network here) and no pretrained weights; decoder: upsampling with skips from the stem and
    each stage, widths 256/128/64/32, then 16 channels at full resolution.
    """

    STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride)
    DECODER = (256, 128, 64, 32)

    def __init__(self, in_channels: int, out_channels: int, checkpoint: bool = False):
        super().__init__(checkpoint)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), _norm(64), nn.ReLU(inplace=True))
        stages, width = [], 64
        for out, blocks, stride in self.STAGES:
            stages.append(nn.Sequential(BasicBlock(width, out, stride), *[BasicBlock(out, out) for _ in range(blocks - 1)]))
            width = out
        self.stages = nn.ModuleList(stages)
        skips = [256, 128, 64, 64]  # stage 3, 2, 1 and the stem
        ins = [512] + list(self.DECODER[:-1])
        self.up = nn.ModuleList([ConvBlock(i + s, o) for i, s, o in zip(ins, skips, self.DECODER)])
        self.full = ConvBlock(self.DECODER[-1], 16)
        self.head = nn.Conv2d(16, out_channels, 1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        stem = self.stem(x)
        skips, x = [stem], F.max_pool2d(stem, 3, 2, 1)
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        x = _decode(x, [skips[3], skips[2], skips[1], skips[0]], self.up)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.head(self.full(x))


def make_backbone(config, out_channels: int, checkpoint: bool = False) -> Backbone:
    """The image network ``config.backbone`` names: ``"small"`` (a U-Net of ``base_channels`` and
    ``depth``, the CPU default) or ``"resnet34"`` (:class:`ResNetUNet`, the paper's size)."""
    if config.backbone == "resnet34":
        return ResNetUNet(config.in_channels, out_channels, checkpoint)
    return UNet(config.in_channels, out_channels, config.base_channels, config.depth, checkpoint)


def slice_of_features(heads: int, features: int, raters: int) -> torch.Tensor:
    """Which feature input ``j`` of head ``g`` reads when R = ``raters`` heads share F = ``features``
    features in slices: ``(g F + j) // R``, (heads, F) long, head g's slice ``g F / R .. (g + 1) F / R``."""
    return torch.div(torch.arange(heads)[:, None] * features + torch.arange(features), raters, rounding_mode="floor")


class GaussianHeads(nn.Module):
    """1x1-conv heads from features (..., F, H, W) to the ``loc`` and ``scale`` of a spatial latent.

    ``heads`` = 1: one head shared by all raters, output (..., 1, Cz, H, W);
    ``heads`` = R: one head per rater, each reading every feature, output (..., R, Cz, H, W). The
    heads are one 1x1 conv whose output channels are R blocks of ``2 Cz`` (``loc``, then ``scale``),
    so that a head added later leaves the others as they were.
    ``slices_of`` = R (the training raters): head g < R reads only its slice of the features,
    ``g F / R .. (g + 1) F / R`` (the ``reads`` mask (heads, F), saved with the weights; a head
    added later gets the mask of the head it is copied from), its weights started at the default
    init's scale for that slice's fan-in rather than for all F features.
    """

    def __init__(self, feature_channels: int, z_channels: int, heads: int = 1, initial_scale: float = 0.1,
                 slices_of: int | None = None):
        super().__init__()
        self.heads, self.z_channels = heads, z_channels
        self.conv = nn.Conv2d(feature_channels, 2 * z_channels * heads, 1)
        if slices_of is not None:
            sliced = slice_of_features(min(heads, slices_of), feature_channels, slices_of)
            reads = torch.zeros(heads, feature_channels)
            reads[:len(sliced)].scatter_(1, sliced, 1.0)
            self.register_buffer("reads", reads)
            with torch.no_grad():  # weights at the default init's scale for the fan-in a head really has
                fan_in = reads.sum(1).clamp(min=1).repeat_interleave(2 * z_channels)
                self.conv.weight *= (feature_channels / fan_in).sqrt()[:, None, None, None]
        else:
            self.reads = None
        # A narrow initial posterior lets z carry the image's features from the first step; the KL
        # then widens the channels the likelihoods do not need (starting at the prior's width
        # instead left z uninformative for many epochs: posterior collapse).
        with torch.no_grad():
            bias = self.conv.bias.view(heads, 2, z_channels)
            bias[:, 1] = inverse_softplus(initial_scale)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reads is None:
            out = run_flat(self.conv, features)
        else:
            weight = self.conv.weight * self.reads.repeat_interleave(2 * self.z_channels, 0)[..., None, None]
            out = run_flat(lambda flat: F.conv2d(flat, weight, self.conv.bias), features)
        out = out.reshape(*out.shape[:-3], self.heads, 2, self.z_channels, *out.shape[-2:])
        if torch.is_autocast_enabled(out.device.type):  # the latent is sampled in float32 all the same
            out = out.float()
        loc, raw_scale = out.unbind(-4)
        return loc, F.softplus(raw_scale) + 1e-3


class PerRaterRemap(nn.Module):
    """Rater-specific 1x1 map of z: (..., R, Cz, H, W) -> (..., R, D, H, W) with weights (R, D, Cz)."""

    def __init__(self, raters: int, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(raters, out_channels, in_channels) / in_channels ** 0.5)
        self.bias = nn.Parameter(torch.zeros(raters, out_channels, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # A batched matmul over flattened pixels: autograd keeps ``z`` itself, not a permuted copy.
        return torch.matmul(self.weight, z.flatten(-2)).unflatten(-1, z.shape[-2:]) + self.bias


class ImageDecoder(nn.Module):
    """Reconstructs the image from a rater's latent map: (..., R, Cz, H, W) -> (..., R, C, H, W).

    A per-rater 1x1 remap (the rater's own decoder, as in the paper) then a shared small conv stack.
    """

    def __init__(self, raters: int, z_channels: int, hidden: int, out_channels: int):
        super().__init__()
        self.remap = PerRaterRemap(raters, z_channels, hidden)
        self.shared = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(hidden, hidden, 3, padding=1),
                                    nn.ReLU(inplace=True), nn.Conv2d(hidden, out_channels, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return run_flat(self.shared, self.remap(z), channels_last=True)


class RaterClassifier(nn.Module):
    """MLP from a preference vector to rater logits: (..., T) -> (..., R)."""

    def __init__(self, tau_dim: int, hidden: int, raters: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(tau_dim, hidden), nn.ReLU(), nn.Linear(hidden, raters))

    def forward(self, tau: torch.Tensor) -> torch.Tensor:
        return self.net(tau)


class SegmentationPredictor(nn.Module):
    """Per-pixel MLP of ``[z, tau tiled over the image]``: logits (..., H, W, K_out).

    ``z`` (..., Cz, H, W), ``tau`` (..., T). The first layer is split into a z part (a
    ``kernel`` x ``kernel`` conv; 1 gives the released code's 1x1 convs) and a tau part, which
    equals concatenating tau at every pixel without materialising the tiled tensor. A ``style_offset``
    (..., hidden) moves the tau part (an enrolled rater's style offset; none for training raters).
    """

    def __init__(self, z_channels: int, tau_dim: int, hidden: int, out_channels: int, kernel: int = 1):
        super().__init__()
        self.from_z = nn.Conv2d(z_channels, hidden, kernel, padding=kernel // 2)
        self.from_tau = nn.Linear(tau_dim, hidden, bias=False)
        self.rest = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, out_channels))

    def _first_layer(self, z: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """The first layer's z part, plus ``style`` (N, hidden) where given, for ``z`` (N, Cz, H, W):
        (N, H W, hidden), channels last as the linear layers read it. With a style it is a new tensor
        (not a view), so that the in-place ReLUs after it add no copies to the backward pass."""
        if self.from_z.kernel_size == (1, 1):
            # a per-pixel matmul that reads z where it lies: autograd keeps z itself, not a copy
            weight = self.from_z.weight.flatten(1).t().expand(len(z), -1, -1)
            out = torch.bmm(z.flatten(-2).mT, weight)
            return out if style is None else out.add_(style[:, None, :])
        conv = F.conv2d(z.contiguous(memory_format=torch.channels_last), self.from_z.weight,
                        padding=self.from_z.padding)
        out = conv.permute(0, 2, 3, 1).flatten(1, 2)  # channels last in memory already
        return out if style is None else out + style[:, None, :]

    def forward(self, z: torch.Tensor, tau: torch.Tensor, style_offset: torch.Tensor | None = None,
                readout: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (..., H, W, K_out); with ``readout`` (K_out,) their combination ``logits @ readout``
        (..., H, W), folded into the last layer (one output channel instead of K_out)."""
        style = self.from_tau(tau) + self.from_z.bias  # the first layer's per-map part: (..., hidden)
        if style_offset is not None:
            style = style + style_offset
        lead = torch.broadcast_shapes(z.shape[:-3], style.shape[:-1])
        flat_z = z.reshape(-1, *z.shape[-3:])
        if z.shape[:-3] == lead:  # a latent map per output map (training, sampling)
            first = self._first_layer(flat_z, style.expand(*lead, -1).reshape(-1, style.shape[-1]))
        else:  # a latent map shared by several styles (identify's common z): its z part once
            shared = self._first_layer(flat_z).unflatten(0, z.shape[:-3])
            first = (shared + style[..., None, :]).flatten(0, -3)
        # the in-place ReLUs act on new tensors only: the linear layers get a 2-d input (N H W, hidden),
        # for which they return new tensors (for more dims, views that backward would copy)
        relu, *hidden_layers, last = self.rest
        hidden = relu(first).flatten(0, 1)
        for layer in hidden_layers:
            hidden = layer(hidden)
        logits = last(hidden) if readout is None else torch.addmv(readout @ last.bias, hidden, readout @ last.weight)
        return logits.reshape(*lead, *z.shape[-2:], *logits.shape[1:])
