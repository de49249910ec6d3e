"""The z heads: one shared, one per rater, or one per rater reading its slice of the features."""
from __future__ import annotations

import torch

from proseg_pyro.networks import GaussianHeads


def test_a_sliced_head_reads_only_its_slice_of_the_features():
    torch.manual_seed(0)
    heads = GaussianHeads(feature_channels=8, z_channels=2, heads=4, slices_of=4)  # two features a head
    features = torch.randn(3, 8, 5, 5)
    loc, scale = heads(features)
    assert loc.shape == scale.shape == (3, 4, 2, 5, 5)
    changed = features.clone()
    changed[:, 2:4] += 5.0  # head 1's slice
    loc_changed, _ = heads(changed)
    moved = (loc_changed - loc).abs().amax(dim=(0, 2, 3, 4))
    assert moved[1] > 0.01 and torch.equal(moved[[0, 2, 3]], torch.zeros(3))


def test_unsliced_per_rater_heads_read_every_feature():
    torch.manual_seed(0)
    heads = GaussianHeads(feature_channels=8, z_channels=2, heads=4)
    features = torch.randn(3, 8, 5, 5)
    changed = features.clone()
    changed[:, 2:4] += 5.0
    moved = (heads(changed)[0] - heads(features)[0]).abs().amax(dim=(0, 2, 3, 4))
    assert (moved > 0.01).all()


def test_a_sliced_head_starts_as_widely_spread_as_a_head_reading_every_feature():
    """The default init scales a conv by its fan-in, all F features; a head reading F / R of them
    is rescaled to that fan-in, so its ``loc`` does not start sqrt(R) times narrower."""
    torch.manual_seed(0)
    features = torch.randn(64, 56, 4, 4)
    with torch.no_grad():
        spread_all = torch.stack([GaussianHeads(56, 8, heads=7)(features)[0].std() for _ in range(20)]).mean()
        spread_sliced = torch.stack([GaussianHeads(56, 8, heads=7, slices_of=7)(features)[0].std()
                                     for _ in range(20)]).mean()
    assert 0.8 < float(spread_sliced / spread_all) < 1.25


def test_a_head_beyond_the_sliced_raters_starts_finite_until_it_is_copied():
    heads = GaussianHeads(feature_channels=8, z_channels=2, heads=5, slices_of=4)
    assert torch.isfinite(heads.conv.weight).all() and torch.equal(heads.reads[4], torch.zeros(8))
