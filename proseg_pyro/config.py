"""Every hyperparameter of a run in one dataclass, with validation and a JSON round trip."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, DataError

Z_HEADS = ("shared", "per_rater", "per_rater_sliced")


# Least and most of each integer field: the caps stop a typo from allocating beyond any machine.
INT_RANGES: dict[str, tuple[int, int]] = {
    "image_size": (1, 4096), "in_channels": (1, 64), "num_classes": (2, 256), "num_raters": (1, 256),
    "base_channels": (1, 1024), "depth": (0, 8), "feature_channels": (1, 1024), "z_channels": (1, 1024),
    "tau_dim": (2, 256), "predictor_hidden": (1, 1024), "predictor_kernel": (1, 31), "classifier_hidden": (1, 1024),
    "x_decoder_channels": (1, 1024), "batch_size": (1, 4096), "steps": (1, 10_000_000), "val_every": (1, 10_000_000),
    "warmup_steps": (0, 10_000_000), "patience": (1, 1_000_000),
    "seed": (0, 2 ** 32 - 1), "num_workers": (0, 256)}
# Least, most and whether the least is excluded, of each real field (all must be finite).
FLOAT_RANGES: dict[str, tuple[float, float, bool]] = {
    "alpha0": (1e-3, 1e3, False), "alpha_star": (1e-3, 1e3, False), "x_sigma": (1e-3, 1e3, False),
    "concentration_floor": (1e-6, 1e3, False), "tau_init_concentration": (1e-3, 1e3, False),
    "lr": (0.0, 1.0, True), "weight_decay": (0.0, 1.0, False),
    "grad_clip": (0.0, 1e6, False), "val_fraction": (0.0, 1.0, False), "foreground_share": (0.0, 1.0, False),
    "rater_lr_scale": (0.0, 1e4, True),
    **{name: (0.0, 1e3, False) for name in ("beta_tau", "beta_z", "weight_x", "weight_r", "weight_y", "dice_weight")}}


@dataclass
class ProSegConfig:
    """Hyperparameters of the model, guide, data pipeline and training loop.

    Shapes the model works with: ``B`` images, ``R = num_raters`` rater slots, ``C = in_channels``,
    ``K = num_classes``, ``T = tau_dim``, latent map ``z`` of ``(z_channels, image_size, image_size)``.
    """

    method: str = "proseg"  # a name registered in proseg_pyro.methods (ProSeg or a compared method)
    # data
    image_size: int = 128
    in_channels: int = 1
    num_classes: int = 2
    num_raters: int = 4
    rater_names: list[str] = field(default_factory=list)
    # raters added after training (proseg_pyro.enrol): q(tau | r) only, slots R .. R + E - 1
    enrolled_raters: list[str] = field(default_factory=list)
    resize: str = "crop"  # "crop" (crop/pad around the centre) or "resize" (bilinear images, nearest labels)
    intensity: str = "zscore"  # "zscore" per image (MRI) or "unit" min-max to [0, 1] (CT crops)
    # in-plane (x, y) voxel size in mm that scans are resampled to; None: each scan's own spacing
    # (`train` fills in the median of the dataset's cases when it reads files with a spacing)
    spacing: list[float] | None = None
    augment: bool = True
    # share of training patches centred on a rater's foreground, where slices are larger than image_size
    foreground_share: float = 0.33
    # networks
    backbone: str = "small"  # "small": a U-Net of base_channels and depth; "resnet34": the paper's size
    base_channels: int = 16  # width of the first U-Net level
    depth: int = 3  # U-Net down-sampling steps
    feature_channels: int = 16  # backbone output, full resolution
    z_channels: int = 16
    tau_dim: int = 8
    predictor_hidden: int = 16
    predictor_kernel: int = 1  # spatial extent of the predictor's first layer on z (1: per-pixel)
    classifier_hidden: int = 32
    x_decoder_channels: int = 8  # per-rater remap of z before the shared image decoder
    # "per_rater_sliced": each rater's head reads only its slice of the backbone's features (on QUBIQ
    # the only setting measured whose styles stay apart: 5.2 of 7 raters in the mean of five seeds at
    # 2000 steps);
    # "shared": one q(z | x) for all raters, so that a style reaches the annotation through tau alone;
    # "per_rater": q(z_i | x) from one head per rater reading every feature, as the released code
    z_head: str = "per_rater_sliced"
    # priors and likelihoods
    tau_prior: str = "dirichlet"
    alpha0: float = 1.0  # Dirichlet concentration of the tau prior (each of the T entries)
    # prior sampling tau* ~ Dir(alpha_star); None: the Dirichlet fitted to the raters' q(tau | r)
    alpha_star: float | None = 0.05
    y_likelihood: str = "categorical"
    x_sigma: float = 1.0  # std of the Gaussian image likelihood (images are z-scored)
    concentration_floor: float = 1e-2
    # q(tau | r) starts at this concentration on two entries of the rater's own and a tenth of it on
    # the others (1.0 is the released code's start; 100 over 10 measured better on QUBIQ and the
    # built-in set over three seeds each)
    tau_init_concentration: float = 100.0
    # ELBO weights (poutine.scale in model and guide) of a per-pixel objective: the terms summed over
    # pixels (z's KL, log p(y)) are divided by H W, log p(x) by C H W; tau's KL and log p(r) count
    # once per rater slot (the plain ELBO divided by H W has beta_tau = weight_r = 1 / (H W))
    beta_tau: float = 1e-4
    beta_z: float = 0.01
    weight_x: float = 1.0
    weight_r: float = 1e-3
    weight_y: float = 1.0
    dice_weight: float = 1.0  # soft-Dice pseudo-likelihood factor beside log p(y) (0: none)
    # optimisation
    lr: float = 1e-3
    # rate of the per-rater variational parameters (q(tau | r); Pionono's q(z_i)) relative to lr
    rater_lr_scale: float = 1.0
    weight_decay: float = 0.0
    batch_size: int = 12
    # the budget: optimiser steps on batches drawn with replacement (or, where epochs is given,
    # that many passes over the training images, converted to steps)
    steps: int = 2000
    epochs: int | None = None
    val_every: int = 100  # steps between validations (and checkpoints)
    warmup_steps: int = 50  # linear warm-up of the learning rate
    lr_schedule: str = "cosine"  # "cosine", "poly" or "constant" after the warm-up
    patience: int = 20  # validations without improvement before stopping
    grad_clip: float = 50.0  # gradient norm clip, set above the usual norms so that it catches spikes only
    val_fraction: float = 0.15
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name, (least, most) in INT_RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= most:
                raise ConfigError(f"config: {name} must be an integer in [{least}, {most}], got {value!r}")
        for name, (least, most, open_least) in FLOAT_RANGES.items():
            value = getattr(self, name)
            if name == "alpha_star" and value is None:
                continue
            if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                    or not (value > least if open_least else value >= least) or not value <= most):
                bounds = f"{'(' if open_least else '['}{least:g}, {most:g}]"
                raise ConfigError(f"config: {name} must be a finite number in {bounds}, got {value!r}")
        if not self.val_fraction < 1:
            raise ConfigError(f"config: val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.predictor_kernel % 2 == 0:
            raise ConfigError(f"config: predictor_kernel must be odd (it keeps the map's size), "
                              f"got {self.predictor_kernel}")
        if self.epochs is not None and (not isinstance(self.epochs, int) or isinstance(self.epochs, bool)
                                        or not 1 <= self.epochs <= 1_000_000):
            raise ConfigError(f"config: epochs must be an integer in [1, 1000000] or null, got {self.epochs!r}")
        if self.backbone == "resnet34" and self.image_size % 32:
            raise ConfigError(f"config: the resnet34 backbone needs image_size divisible by 32, got {self.image_size}")
        if self.image_size % (2 ** self.depth):
            raise ConfigError(f"config: image_size {self.image_size} must be divisible by 2**depth "
                              f"(depth={self.depth})")
        for name in ("method", "tau_prior", "y_likelihood", "z_head", "resize", "intensity", "lr_schedule", "backbone"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"config: {name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.augment, bool):
            raise ConfigError(f"config: augment must be true or false, got {self.augment!r}")
        # the registries' names (imported here: they import this module, and their torch code is only
        # needed once a config is made)
        from .likelihoods import Y_LIKELIHOODS
        from .methods import trainable
        from .tau_families import TAU_FAMILIES

        choices = {"method": trainable(), "tau_prior": tuple(TAU_FAMILIES), "y_likelihood": tuple(Y_LIKELIHOODS),
                   "z_head": Z_HEADS,
                   "resize": ("crop", "resize"), "intensity": ("zscore", "unit"),
                   "lr_schedule": ("cosine", "poly", "constant"), "backbone": ("small", "resnet34")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"config: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        most = Y_LIKELIHOODS[self.y_likelihood].max_classes
        if most is not None and self.num_classes > most:
            raise ConfigError(f"config: y_likelihood {self.y_likelihood!r} models at most {most} classes, "
                              f"got num_classes={self.num_classes}")
        spacing = self.spacing
        if spacing is not None and not (
                isinstance(spacing, (list, tuple)) and len(spacing) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                        for v in spacing)):
            raise ConfigError(f"config: spacing must be null or two finite positive numbers (x, y mm), got {spacing!r}")
        names = self.rater_names
        if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names) \
                or len(set(names)) != len(names):
            raise ConfigError(f"config: rater_names must be a list of distinct names, got {names!r}")
        if self.rater_names and len(self.rater_names) != self.num_raters:
            raise ConfigError(f"config: {len(self.rater_names)} rater_names for num_raters={self.num_raters}")
        enrolled = self.enrolled_raters
        if not isinstance(enrolled, list) or not all(isinstance(name, str) and name for name in enrolled):
            raise ConfigError(f"config: enrolled_raters must be a list of names, got {enrolled!r}")
        if len(set(enrolled)) != len(enrolled) or set(enrolled) & set(self.rater_names):
            raise ConfigError(f"config: enrolled_raters {enrolled} repeat a name (raters: {self.rater_names})")

    # --- raters and the data a run is fitted to ------------------------------------------------
    def slot_names(self) -> list[str]:
        """Every rater slot's name: the R training raters (``"0" .. "R-1"`` if unnamed), then the enrolled ones."""
        return list(self.rater_names or map(str, range(self.num_raters))) + list(self.enrolled_raters)

    def slot_of(self, name: str) -> int:
        """The slot of rater ``name`` (training or enrolled); an unknown name is a :class:`ConfigError`."""
        names = self.slot_names()
        if name not in names:
            raise ConfigError(f"unknown rater {name!r}; this checkpoint knows {', '.join(names)}")
        return names.index(name)

    def fitted_to(self, data: Any) -> "ProSegConfig":
        """This config with the raters, image channels and classes of ``data`` (a
        :class:`~proseg_pyro.data.slices.SliceSet`: ``.raters``, ``.images`` (S, C, H, W), ``.classes``)."""
        return self.replace(num_raters=len(data.raters), rater_names=list(data.raters),
                            in_channels=data.images.shape[1], num_classes=len(data.classes))

    # --- JSON round trip -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ProSegConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"config: unknown keys {unknown}")
        return cls(**values)

    def to_json(self, path: str | os.PathLike) -> None:
        from .io_utils import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike, base: "ProSegConfig | None" = None) -> "ProSegConfig":
        """Read a config file; keys it leaves out come from ``base`` (default: the defaults)."""
        from .io_utils import read_json

        try:
            values = read_json(path)
        except DataError as err:
            raise ConfigError(str(err)) from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: a config file must hold a JSON object")
        try:
            return cls.from_dict({**(base.to_dict() if base else {}), **values})
        except (ConfigError, TypeError) as err:
            raise ConfigError(f"{path}: {err}") from None

    def replace(self, **changes: Any) -> "ProSegConfig":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict[str, Any]] = {
    # The published settings: 128x128 inputs, ResNet-34 U-Nets, per-rater z heads, 8-dim tau with a
    # Dir(1) prior, prior sampling from Dir(1) as the authors' released model draws it, Adam at 1e-4
    # with batch 12 for 100 epochs (converted to steps on the data) on a cosine schedule without
    # warm-up, q(tau | r) started at the released concentrations (1 and 0.1), the rater parameters
    # at 40x the rate (the released 0.002 beside 5e-5), and the plain
    # ELBO: divided by 128 * 128 pixels it weighs z's KL 1 and tau's KL and log p(r) 1 / 16384
    # (weight_x 1 is the plain ELBO for one channel; C channels would need C). What stays different
    # is listed in the README ("Reproducing the paper").
    "paper": dict(image_size=128, backbone="resnet34", z_head="per_rater", tau_dim=8, alpha0=1.0,
                  alpha_star=1.0, tau_init_concentration=1.0, lr=1e-4, rater_lr_scale=40.0, batch_size=12,
                  epochs=100,
                  lr_schedule="cosine", warmup_steps=0, beta_z=1.0, beta_tau=1 / 16384,
                  weight_r=1 / 16384, weight_x=1.0, weight_y=1.0, dice_weight=0.0),
    # What learned rater styles within a CPU budget (the defaults above).
    "default": {},
}


def preset(name: str, **overrides: Any) -> ProSegConfig:
    """A named preset (``"paper"`` or ``"default"``) with ``overrides`` applied."""
    if name not in PRESETS:
        raise ConfigError(f"config: unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return ProSegConfig(**{**PRESETS[name], **overrides})
