"""Checkpoints of the earlier format load into the same function."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from proseg_pyro.checkpoint import EARLIER_FORMAT, FORMAT, load_checkpoint, read_checkpoint, untangle_heads
from proseg_pyro.guide import ProSegGuide
from proseg_pyro.model import ProSegModel

from .conftest import tiny_config


def _earlier_heads(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, heads: int) -> torch.Tensor:
    """The earlier wiring: a grouped conv over interleaved copies of the features, (B, R * 2 Cz, H, W)."""
    return F.conv2d(features.repeat_interleave(heads, dim=1), weight, bias, groups=heads)


def test_untangled_heads_compute_what_the_grouped_wiring_did():
    torch.manual_seed(0)
    heads, z_channels, features = 3, 2, 8
    weight, bias = torch.randn(heads * 2 * z_channels, features, 1, 1), torch.randn(heads * 2 * z_channels)
    x = torch.randn(2, features, 5, 5)
    assert torch.allclose(F.conv2d(x, untangle_heads(weight, heads), bias), _earlier_heads(x, weight, bias, heads),
                          atol=1e-5)
    # head 0 of three read features 0, 0, 0, 1, 1, 1, 2, 2: its weights on 0..2 are the sums, the rest 0
    blocks, untangled = weight.view(heads, -1, features), untangle_heads(weight, heads).view(heads, -1, features)
    assert torch.allclose(untangled[0, :, 0], blocks[0, :, :3].sum(-1)) and not untangled[0, :, 3:].any()


@pytest.mark.parametrize("z_head", ["per_rater", "shared"])
def test_an_earlier_format_checkpoint_keeps_its_z_heads(z_head, tmp_path):
    config = tiny_config(z_head=z_head, num_raters=3)
    torch.manual_seed(1)
    model, guide = ProSegModel(config), ProSegGuide(config)
    state = guide.state_dict()
    weight, bias = state["z_heads.conv.weight"], state["z_heads.conv.bias"]
    torch.save({"format": EARLIER_FORMAT, "method": "proseg", "config": config.to_dict(),
                "model": model.state_dict(), "guide": state}, tmp_path / "old.pt")
    _, loaded, _ = load_checkpoint(tmp_path / "old.pt")
    assert read_checkpoint(tmp_path / "old.pt")["format"] == FORMAT
    features = torch.randn(2, config.feature_channels, 16, 16)
    heads = 3 if z_head == "per_rater" else 1
    earlier = _earlier_heads(features, weight, bias, heads).view(2, heads, 2, config.z_channels, 16, 16)
    loc, _ = loaded.z_heads(features)
    assert torch.allclose(loc, earlier[:, :, 0], atol=1e-5)
