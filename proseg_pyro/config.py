"""Every hyperparameter of a run in one dataclass, with validation and a JSON round trip."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, DataError

TAU_PRIORS = ("dirichlet", "logistic_normal")
Y_LIKELIHOODS = ("categorical", "bernoulli")
Z_HEADS = ("shared", "per_rater")


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
    augment: bool = True
    # networks
    base_channels: int = 16  # width of the first U-Net level
    depth: int = 3  # U-Net down-sampling steps
    feature_channels: int = 16  # backbone output, full resolution
    z_channels: int = 16
    tau_dim: int = 8
    predictor_hidden: int = 16
    predictor_kernel: int = 1  # spatial extent of the predictor's first layer on z (1: per-pixel)
    classifier_hidden: int = 32
    x_decoder_channels: int = 8  # per-rater remap of z before the shared image decoder
    z_head: str = "shared"  # "shared": one q(z|x) for all raters; "per_rater": paper-faithful heads
    # priors and likelihoods
    tau_prior: str = "dirichlet"
    alpha0: float = 1.0  # Dirichlet concentration of the tau prior (each of the T entries)
    # prior sampling tau* ~ Dir(alpha_star); None: the Dirichlet fitted to the raters' q(tau | r)
    # (on two demo models, prior GED / d_pp: fitted 0.124 / 0.29, 0.1: 0.117-0.125 / 0.29-0.33,
    # 0.05: 0.110-0.117 / 0.31-0.36, D_match unchanged)
    alpha_star: float | None = 0.05
    y_likelihood: str = "categorical"
    x_sigma: float = 1.0  # std of the Gaussian image likelihood (images are z-scored)
    concentration_floor: float = 1e-2
    # ELBO weights (poutine.scale in model and guide)
    beta_tau: float = 0.1
    beta_z: float = 0.01  # 0.1 left predictions too small (rater Dice 0.80/0.72/0.74/0.86 vs 0.89/0.87/0.78/0.91)
    weight_x: float = 1.0
    weight_r: float = 1.0
    weight_y: float = 1.0
    # optimisation
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 12
    epochs: int = 100
    patience: int = 15  # epochs without validation improvement before stopping
    grad_clip: float = 10.0
    val_fraction: float = 0.15
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        positive_ints = ("image_size", "in_channels", "num_raters", "base_channels", "feature_channels",
                         "z_channels", "tau_dim", "predictor_hidden", "classifier_hidden",
                         "x_decoder_channels", "batch_size", "epochs", "patience", "predictor_kernel")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"config: {name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ConfigError(f"config: num_classes must be >= 2, got {self.num_classes}")
        if self.depth < 0 or self.image_size % (2 ** self.depth):
            raise ConfigError(f"config: image_size {self.image_size} must be divisible by 2**depth "
                              f"(depth={self.depth})")
        if self.tau_dim < 2:
            raise ConfigError(f"config: tau_dim must be >= 2, got {self.tau_dim}")
        choices = {"tau_prior": TAU_PRIORS, "y_likelihood": Y_LIKELIHOODS, "z_head": Z_HEADS,
                   "resize": ("crop", "resize"), "intensity": ("zscore", "unit")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"config: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.y_likelihood == "bernoulli" and self.num_classes != 2:
            raise ConfigError("config: y_likelihood 'bernoulli' needs num_classes == 2")
        for name in ("alpha0", "x_sigma", "concentration_floor", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"config: {name} must be > 0, got {getattr(self, name)!r}")
        if self.alpha_star is not None and not self.alpha_star > 0:
            raise ConfigError(f"config: alpha_star must be > 0 or null, got {self.alpha_star!r}")
        for name in ("beta_tau", "beta_z", "weight_x", "weight_r", "weight_y", "weight_decay", "grad_clip"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"config: {name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"config: val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.rater_names and len(self.rater_names) != self.num_raters:
            raise ConfigError(f"config: {len(self.rater_names)} rater_names for num_raters={self.num_raters}")
        enrolled = self.enrolled_raters
        if not isinstance(enrolled, list) or not all(isinstance(name, str) and name for name in enrolled):
            raise ConfigError(f"config: enrolled_raters must be a list of names, got {enrolled!r}")
        if len(set(enrolled)) != len(enrolled) or set(enrolled) & set(self.rater_names):
            raise ConfigError(f"config: enrolled_raters {enrolled} repeat a name (raters: {self.rater_names})")
        if enrolled and self.z_head != "shared":
            raise ConfigError("config: enrolled raters need z_head 'shared' (with per-rater z heads a rater's "
                              "style lives in its head, which a new rater does not have)")

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
    # The paper's published settings (Adam 1e-4, batch 12, 100 epochs, plain ELBO weights).
    "paper": dict(lr=1e-4, batch_size=12, epochs=100, tau_dim=8, alpha0=1.0, image_size=128,
                  beta_tau=1.0, beta_z=1.0, z_head="per_rater"),
    # What learned rater styles within a CPU budget (KL weight 0.1, lr 1e-3, shared z encoder).
    "default": {},
}


def preset(name: str, **overrides: Any) -> ProSegConfig:
    """A named preset (``"paper"`` or ``"default"``) with ``overrides`` applied."""
    if name not in PRESETS:
        raise ConfigError(f"config: unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return ProSegConfig(**{**PRESETS[name], **overrides})
