"""The config: validation messages, JSON round trip, presets and file overrides."""
from __future__ import annotations

import json
import re

import pytest

from proseg_pyro.config import PRESETS, ProSegConfig, preset
from proseg_pyro.errors import ConfigError


def test_json_round_trip(tmp_path):
    config = ProSegConfig(image_size=32, rater_names=["a", "b"], num_raters=2, tau_prior="logistic_normal",
                          alpha_star=0.5)
    config.to_json(tmp_path / "config.json")
    assert ProSegConfig.from_json(tmp_path / "config.json") == config


def test_file_values_override_a_base(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"lr": 0.01}))
    config = ProSegConfig.from_json(tmp_path / "c.json", base=preset("paper"))
    assert config.lr == 0.01 and config.batch_size == 12 and config.beta_z == 1.0


@pytest.mark.parametrize("values,message", [
    ({"image_size": 0}, "image_size must be an integer in [1, 4096], got 0"),
    ({"image_size": 2 ** 20}, "image_size must be an integer in [1, 4096]"),
    ({"image_size": 20, "depth": 3}, "divisible by 2**depth"),
    ({"tau_prior": "gamma"}, "tau_prior must be one of"),
    ({"y_likelihood": "bernoulli", "num_classes": 3}, "models at most 2 classes"),
    ({"beta_z": -1.0}, "beta_z must be a finite number in [0, 1000]"),
    ({"lr": float("inf")}, "lr must be a finite number in (0, 1], got inf"),
    ({"lr": 1e30}, "lr must be a finite number in (0, 1]"),
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"lr": "0.1"}, "lr must be a finite number"),
    ({"alpha0": 1e-30}, "alpha0 must be a finite number in [0.001, 1000]"),
    ({"seed": 2 ** 64}, "seed must be an integer in [0, 4294967295]"),
    ({"seed": -1}, "seed must be an integer in [0, 4294967295]"),
    ({"predictor_kernel": 2}, "predictor_kernel must be odd"),
    ({"in_channels": 10 ** 6}, "in_channels must be an integer in [1, 64]"),
    ({"num_raters": 10 ** 6}, "num_raters must be an integer in [1, 256]"),
    ({"batch_size": True}, "batch_size must be an integer"),
    ({"augment": "yes"}, "augment must be true or false"),
    ({"z_head": 3}, "z_head must be a string"),
    ({"rater_names": ["a", 1], "num_raters": 2}, "rater_names must be a list of distinct names"),
    ({"rater_names": ["a"], "num_raters": 2}, "1 rater_names for num_raters=2"),
    ({"val_fraction": 1.0}, "val_fraction must be in [0, 1)"),
    ({"backbone": "resnet34", "image_size": 48}, "divisible by 32"),
    ({"backbone": "vit"}, "backbone must be one of"),
    ({"lr_schedule": "step"}, "lr_schedule must be one of"),
    ({"epochs": 0}, "epochs must be an integer in [1, 1000000] or null"),
    ({"warmup_steps": -1}, "warmup_steps must be an integer in [0, 10000000]"),
    ({"foreground_share": 1.5}, "foreground_share must be a finite number in [0, 1]"),
    ({"dice_weight": -1.0}, "dice_weight must be a finite number in [0, 1000]"),
    ({"spacing": [0.8, float("nan")]}, "spacing must be null or two finite positive numbers (x, y mm)"),
    ({"spacing": [float("inf"), 0.8]}, "spacing must be null or two finite positive numbers"),
    ({"spacing": [0.8, -0.8]}, "spacing must be null or two finite positive numbers"),
    ({"spacing": [0.8]}, "spacing must be null or two finite positive numbers"),
    ({"spacing": [True, 1.0]}, "spacing must be null or two finite positive numbers"),
    ({"spacing": 0.8}, "spacing must be null or two finite positive numbers"),
])
def test_invalid_values_name_the_field(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ProSegConfig(**values)


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"learning_rate": 1}', "unknown keys"),
])
def test_bad_config_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as error:
        ProSegConfig.from_json(path)
    assert str(path) in str(error.value)


def test_presets():
    assert preset("paper").lr == 1e-4 and preset("paper").z_head == "per_rater"
    assert preset("default") == ProSegConfig()
    assert set(PRESETS) == {"paper", "default"}
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("fast")


def test_paper_preset_restores_the_published_settings():
    from proseg_pyro.guide import ProSegGuide
    from proseg_pyro.model import ProSegModel
    from proseg_pyro.schedule import learning_rate, total_steps

    config = preset("paper")
    published = dict(image_size=128, backbone="resnet34", z_head="per_rater", tau_dim=8, alpha0=1.0,
                     alpha_star=1.0, lr=1e-4, rater_lr_scale=40.0, batch_size=12, epochs=100,
                     lr_schedule="cosine", warmup_steps=0, beta_z=1.0, weight_x=1.0, weight_y=1.0,
                     dice_weight=0.0)
    assert {key: getattr(config, key) for key in published} == published
    # the plain ELBO divided by 128 * 128 pixels: tau's KL and log p(r) count 1 / (H W)
    assert config.beta_tau * 128 * 128 == config.weight_r * 128 * 128 == 1.0
    # 100 epochs of 1,200 training images in batches of 12 are 10,000 steps, from the full rate down
    assert total_steps(config, 1200) == 10_000
    assert learning_rate(config, 0, 10_000) == 1e-4
    guide = ProSegGuide(config.replace(num_raters=3))  # builds: the ResNet-34 U-Net, one z head per rater
    assert sum(p.numel() for p in guide.parameters()) > 20e6
    ProSegModel(config.replace(num_raters=3))
