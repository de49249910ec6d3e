"""Personalised and prior sampling: shapes, chunking, and that each draw is a valid probability map."""
from __future__ import annotations

import pytest
import torch

from proseg_pyro import inference
from proseg_pyro.errors import ProSegError
from proseg_pyro.guide import ProSegGuide
from proseg_pyro.model import ProSegModel

from .conftest import tiny_config


@pytest.fixture(params=["shared", "per_rater"])
def pair(request):
    torch.manual_seed(0)
    config = tiny_config(z_head=request.param, num_classes=3)
    return ProSegModel(config).eval(), ProSegGuide(config).eval()


def test_personalised_shapes_for_a_subset_of_raters(pair):
    model, guide = pair
    x = torch.randn(3, 1, 16, 16)
    probs = inference.personalised(model, guide, x, [2, 0], num_samples=5)
    assert probs.shape == (5, 3, 2, 16, 16)
    assert ((probs >= 0) & (probs <= 1)).all()
    classes = inference.personalised(model, guide, x, [1], num_samples=4, return_class_probs=True)
    assert classes.shape == (4, 3, 1, 16, 16, 3)
    torch.testing.assert_close(classes.sum(-1), torch.ones(4, 3, 1, 16, 16))


def test_chunked_sampling_matches_one_pass(pair):
    """A tiny memory budget splits the samples into one-sample chunks with the same output."""
    model, guide = pair
    x = torch.randn(2, 1, 16, 16)
    torch.manual_seed(5)
    whole = inference.prior(model, guide, x, num_samples=6)
    torch.manual_seed(5)
    chunked = inference.prior(model, guide, x, num_samples=6, max_elements=1)
    assert whole.shape == chunked.shape == (6, 2, 16, 16)
    # one pass and six single-sample chunks draw from the same distribution: compare moments
    assert abs(whole.mean() - chunked.mean()) < 0.2


def test_prior_reports_the_rater_each_tau_maps_to(pair):
    model, guide = pair
    x = torch.randn(2, 1, 16, 16)
    probs, raters = inference.prior(model, guide, x, num_samples=7, return_raters=True)
    assert probs.shape == (7, 2, 16, 16)
    assert raters.shape == (7, 2)
    assert raters.min() >= 0 and raters.max() < model.config.num_raters


def test_tau_draws_follow_the_raters_concentration(pair):
    """With rater 3's concentration piled on entry 5, every draw of q(tau | r=3) sits at that corner."""
    model, guide = pair
    with torch.no_grad():
        guide.tau_concentration_raw[3] = 1e4 * torch.nn.functional.one_hot(torch.tensor(5), model.config.tau_dim)
    tau = guide.tau_dist(torch.tensor([3])).sample((10,))
    assert (tau[..., 5] > 0.99).all()


def test_latent_draws_follow_each_maps_own_normal():
    """z over a reused buffer: per-rater means and scales go to the samples of their rater only."""
    torch.manual_seed(0)
    loc = torch.tensor([[0.0, 10.0, -5.0], [3.0, -2.0, 7.0]]).reshape(2, 3, 1, 1, 1).expand(2, 3, 2, 4, 4)
    scale = torch.tensor([[1.0, 0.5, 2.0], [0.1, 3.0, 1.0]]).reshape(2, 3, 1, 1, 1).expand(2, 3, 2, 4, 4)
    buffer = torch.full((4000, 2, 2, 4, 4), float("nan"))
    rater = torch.tensor([2, 0]).expand(4000, 2)  # image 0 takes rater 2, image 1 rater 0
    z = inference._chosen_latent_(loc, scale, rater, buffer)
    assert z.data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(z.mean((0, 2, 3, 4)), torch.tensor([-5.0, 3.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3, 4)), torch.tensor([2.0, 0.1]), atol=0.03, rtol=0)
    shared = inference._chosen_latent_(loc[:, :1], scale[:, :1], rater, buffer)
    torch.testing.assert_close(shared.mean((0, 2, 3, 4)), torch.tensor([0.0, 3.0]), atol=0.03, rtol=0)


def test_alpha_star_changes_the_prior_draws_of_a_trained_pair(pair):
    model, guide = pair
    inference.use_alpha_star(model, guide, 0.01, "run/best.pt")
    assert model.config.alpha_star == guide.config.alpha_star == 0.01
    tau = inference.sampling_tau(model, guide, None, torch.zeros(())).sample((2000,))
    assert (tau.max(-1).values > 0.9).float().mean() > 0.5  # Dir(0.01) draws sit near the corners


@pytest.mark.parametrize("overrides", [{"tau_prior": "logistic_normal"}, {"method": "proseg_no_tau"}])
def test_alpha_star_is_refused_where_no_draw_takes_it(overrides):
    from proseg_pyro.methods import get_method

    config = tiny_config(**overrides)
    model, guide = get_method(config.method).build(config)
    with pytest.raises(ProSegError, match=r"run/best.pt: --alpha-star applies to models whose prior draws"):
        inference.use_alpha_star(model, guide, 0.01, "run/best.pt")
    assert model.config.alpha_star == config.alpha_star
