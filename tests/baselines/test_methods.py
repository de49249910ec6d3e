"""Every compared method trains through the shared loop, reloads, samples and evaluates at tiny size."""
from __future__ import annotations

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from proseg_pyro.checkpoint import load_checkpoint
from proseg_pyro.evaluate import evaluate
from proseg_pyro.methods import get_method, trainable
from proseg_pyro.train import as_tensors, fit

from ..conftest import tiny_config

BASELINES = [name for name in trainable() if name != "proseg"]


def _config(slices, method):
    return tiny_config(method=method, steps=2).fitted_to(slices)


@pytest.mark.parametrize("method", BASELINES)
def test_trains_reloads_samples_and_evaluates(method, tiny_set, tmp_path):
    slices, _ = tiny_set
    config = _config(slices, method)
    fit(config, slices.split("train"), slices.split("val"), tmp_path, progress=False)
    model, guide, loaded = load_checkpoint(tmp_path / "best.pt", method=method)
    assert loaded == config and model.config.method == method
    test = slices.split("test")
    x = torch.as_tensor(test.images[:3])
    sampler = get_method(method)
    personal = sampler.personalised(model, guide, x, [2, 0], 5)
    diverse = sampler.prior(model, guide, x, 5)
    assert personal.shape == (5, 3, 2, 16, 16) and diverse.shape == (5, 3, 16, 16)
    for probs in (personal, diverse):
        assert torch.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1
    result = evaluate(model, guide, test, num_samples=4)
    for row in result.rows.values():
        assert np.isfinite(row["ged"]) and 0 <= row["dice_match"] <= 1 and len(row["dice_rater"]) == 4


@pytest.mark.parametrize("method", BASELINES)
def test_annotation_sites_use_the_plates_and_the_rater_mask(method, tiny_set):
    slices, _ = tiny_set
    model, guide = get_method(method).build(_config(slices, method))
    x, y, mask = as_tensors(slices.select(range(3)), "cpu")
    mask[1, 2] = False
    guide_trace = poutine.trace(guide).get_trace(x, y, mask)
    trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, y, mask)
    observed = {name: site for name, site in trace.nodes.items()
                if site["type"] == "sample" and site["is_observed"] and not isinstance(site["fn"], dist.Unit)}
    assert "y" in observed
    for name, site in observed.items():
        assert site["fn"].batch_shape == (3, 4) and torch.equal(torch.as_tensor(site["mask"]).expand(3, 4), mask)
        if name.startswith("y"):
            assert site["fn"].event_shape == (16, 16)


def test_ablations_drop_their_latent(tiny_set):
    slices, _ = tiny_set
    x, y, mask = as_tensors(slices.select(range(2)), "cpu")
    sites = {}
    for method in ("proseg_no_tau", "proseg_no_z"):
        model, guide = get_method(method).build(_config(slices, method))
        trace = poutine.trace(poutine.replay(model, trace=poutine.trace(guide).get_trace(x, y, mask))).get_trace(
            x, y, mask)
        sites[method] = {name for name, site in trace.nodes.items() if site["type"] == "sample"} - {"images", "raters"}
    # y_dice: the soft-Dice factor beside y (dice_weight > 0 by default)
    assert sites == {"proseg_no_tau": {"z", "x", "y", "y_dice"}, "proseg_no_z": {"tau", "r", "y", "y_dice"}}


def test_per_rater_unets_learn_only_from_their_rater(tiny_set):
    slices, _ = tiny_set
    model, guide = get_method("unet").build(_config(slices, "unet"))
    x, y, mask = as_tensors(slices.select(range(4)), "cpu")
    mask[:, 0] = False  # nobody sees rater 0's annotations
    loss = -poutine.trace(model).get_trace(x, y, mask).log_prob_sum(lambda name, site: site["is_observed"])
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.nets[0].parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.nets[1].parameters())
