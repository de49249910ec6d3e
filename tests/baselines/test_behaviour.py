"""What each compared method's model does beyond training: the parts that make it that method."""
from __future__ import annotations

import torch
from pyro import poutine

from proseg_pyro.baselines.confusion import ConfusionModel
from proseg_pyro.baselines.dpersona import DPersonaModel, bound_targets
from proseg_pyro.baselines.pionono import LATENT_DIM, PiononoGuide, PiononoModel
from proseg_pyro.baselines.tab import RANK, sample_logits
from proseg_pyro.train import as_tensors

from ..conftest import tiny_config


def test_confusion_matrices_are_row_stochastic_and_start_near_identity():
    x = torch.randn(2, 1, 16, 16)
    for pixelwise, shape in ((False, (4, 1, 1, 2, 2)), (True, (2, 4, 16, 16, 2, 2))):
        model = ConfusionModel(tiny_config(), pixelwise)
        cm = model.confusion(x)
        assert cm.shape == shape and (cm >= 0).all()
        torch.testing.assert_close(cm.sum(-1), torch.ones(shape[:-1]))
        assert (torch.diagonal(cm, dim1=-2, dim2=-1) > 0.8).all()
        torch.testing.assert_close(model.rater_class_probs(x).sum(-1), torch.ones(2, 4, 16, 16))


def test_confusion_trace_penalty_favours_unreliable_raters():
    model = ConfusionModel(tiny_config(), pixelwise=False)
    x, y = torch.randn(1, 1, 16, 16), torch.zeros(1, 4, 16, 16, dtype=torch.long)
    trace = poutine.trace(model).get_trace(x, y)
    penalty = trace.nodes["trace"]["fn"].log_factor
    assert penalty.shape == (1, 4) and (penalty < 0).all()
    with torch.no_grad():
        model.cm_logits.zero_()  # uniform confusion: the smallest trace
    lower = poutine.trace(model).get_trace(x, y).nodes["trace"]["fn"].log_factor
    assert (lower > penalty).all()


def test_dpersona_bounds_are_union_and_intersection_of_present_raters():
    y = torch.tensor([[[[1, 1, 0, 0]], [[1, 0, 0, 1]], [[0, 0, 0, 1]]]])  # (B=1, R=3, H=1, W=4)
    mask = torch.tensor([[True, True, False]])
    union, intersection = bound_targets(y, mask)
    assert union.tolist() == [[[1, 1, 0, 1]]] and intersection.tolist() == [[[1, 0, 0, 0]]]


def test_dpersona_stage_two_trains_only_the_projection_heads(tiny_set):
    slices, _ = tiny_set
    model = DPersonaModel(tiny_config().fitted_to(slices))
    x, y, mask = as_tensors(slices.select(range(2)), "cpu")
    trace = poutine.trace(model).get_trace(x, y, mask)
    site = trace.nodes["y_persona"]
    site["fn"].log_prob(site["value"]).sum().backward()
    for frozen in (model.fcomb, model.unet, model.prior_net):
        assert all(p.grad is None for p in frozen.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.heads.parameters())


def test_pionono_latent_is_one_per_rater_shared_by_all_images():
    config = tiny_config()
    model, guide = PiononoModel(config), PiononoGuide(config)
    x, y = torch.randn(3, 1, 16, 16), torch.zeros(3, 4, 16, 16, dtype=torch.long)
    guide_trace = poutine.trace(guide).get_trace(x, y)
    trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, y)
    assert trace.nodes["z"]["value"].shape == (4, LATENT_DIM)
    assert trace.nodes["y"]["fn"].batch_shape == (3, 4)
    scale_tril = guide.z_dist().scale_tril
    assert torch.equal(scale_tril, torch.tril(scale_tril)) and (torch.diagonal(scale_tril, dim1=-2, dim2=-1) > 0).all()


def test_tab_logit_noise_is_spatially_correlated_through_its_low_rank_part():
    loc = torch.zeros(4, 4, 1)
    independent = sample_logits(loc, torch.ones(4, 4, 1), torch.zeros(4, 4, 1, RANK), (4000,))
    shared = sample_logits(loc, torch.full((4, 4, 1), 1e-3), torch.ones(4, 4, 1, RANK), (4000,))
    corr = lambda s: torch.corrcoef(s[:, [0, 3], [0, 3], 0].T)[0, 1]  # noqa: E731  (two far-apart pixels)
    assert abs(corr(independent)) < 0.1 and corr(shared) > 0.99
    assert abs(shared.var(0).mean() - RANK) < 0.5
