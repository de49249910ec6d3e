"""The model is the PGM of the paper: its sites, plates, shapes and masking."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from proseg_pyro.guide import ProSegGuide
from proseg_pyro.model import ProSegModel

from .conftest import tiny_config


def _traces(config, x, y, mask):
    model, guide = ProSegModel(config), ProSegGuide(config)
    guide_trace = poutine.trace(guide).get_trace(x, y, mask)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, y, mask)
    return model_trace, guide_trace


def _sample_sites(trace):
    """Sample sites of a trace, without the plates' subsample sites."""
    return {name: site for name, site in trace.nodes.items()
            if site["type"] == "sample" and name not in ("images", "raters")}


@pytest.fixture
def batch():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 16, 16)
    y = torch.randint(0, 2, (3, 4, 16, 16))
    mask = torch.ones(3, 4, dtype=torch.bool)
    return x, y, mask


def test_model_has_the_papers_sites_and_plates(batch):
    config = tiny_config()
    model_trace, guide_trace = _traces(config, *batch)
    sites = _sample_sites(model_trace)
    assert set(sites) == {"tau", "z", "x", "r", "y", "y_dice"}  # y_dice: the soft-Dice factor (dice_weight > 0)
    latent = {name for name, site in sites.items() if not site["is_observed"]}
    assert latent == {"tau", "z"}
    assert isinstance(sites["tau"]["fn"], dist.Dirichlet)
    assert isinstance(sites["z"]["fn"].base_dist, dist.Normal)
    assert sites["tau"]["value"].shape == (3, 4, config.tau_dim)
    assert sites["z"]["value"].shape == (3, 4, config.z_channels, 16, 16)
    assert sites["y"]["fn"].event_shape == (16, 16)
    assert torch.equal(sites["r"]["value"], torch.arange(4).expand(3, 4))
    for site in sites.values():
        frames = {frame.name: (frame.dim, frame.size) for frame in site["cond_indep_stack"]}
        assert frames == {"images": (-2, 3), "raters": (-1, 4)}
    guide_sites = _sample_sites(guide_trace)
    assert set(guide_sites) == {"tau", "z"}
    assert not any(site["is_observed"] for site in guide_sites.values())


def test_masking_a_rater_removes_its_terms_from_the_elbo(batch):
    x, y, mask = batch
    config = tiny_config()
    masked = mask.clone()
    masked[1, 2] = False
    model_trace, guide_trace = _traces(config, x, y, masked)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    for name in ("tau", "z", "x", "r", "y"):
        assert model_trace.nodes[name]["log_prob"][1, 2] == 0
        assert model_trace.nodes[name]["log_prob"][0, 2] != 0
    for name in ("tau", "z"):
        assert guide_trace.nodes[name]["log_prob"][1, 2] == 0
    # numerically: the ELBO with the slot masked equals the full one minus that slot's terms
    pyro.set_rng_seed(1)
    full_model, full_guide = _traces(config, x, y, mask)
    full_model.compute_log_prob()
    full_guide.compute_log_prob()
    pyro.set_rng_seed(1)
    part_model, part_guide = _traces(config, x, y, masked)
    part_model.compute_log_prob()
    part_guide.compute_log_prob()

    def elbo(model_trace, guide_trace):
        return sum(model_trace.nodes[n]["log_prob"].sum() for n in ("tau", "z", "x", "r", "y")) - \
            sum(guide_trace.nodes[n]["log_prob"].sum() for n in ("tau", "z"))

    slot = sum(full_model.nodes[n]["log_prob"][1, 2] for n in ("tau", "z", "x", "r", "y")) - \
        sum(full_guide.nodes[n]["log_prob"][1, 2] for n in ("tau", "z"))
    torch.testing.assert_close(elbo(part_model, part_guide), elbo(full_model, full_guide) - slot)


def test_masked_slots_ignore_their_annotation_values(batch):
    x, y, mask = batch
    mask = mask.clone()
    mask[0, 1] = False
    other = y.clone()
    other[0, 1] = 1 - other[0, 1]
    config = tiny_config()
    values = []
    for labels in (y, other):
        pyro.set_rng_seed(4)
        model_trace, _ = _traces(config, x, labels, mask)
        values.append(model_trace.log_prob_sum())
    torch.testing.assert_close(values[0], values[1])


def test_kl_weights_scale_both_latents_in_model_and_guide_per_pixel(batch):
    """Terms summed over the 16 x 16 pixels are divided by H W (x also by its channel count), the
    per-slot terms of tau and r are not."""
    config = tiny_config(beta_tau=0.25, beta_z=0.5, weight_y=2.0, weight_x=3.0, weight_r=0.125, dice_weight=0.0)
    model_trace, guide_trace = _traces(config, *batch)
    assert model_trace.nodes["tau"]["scale"] == pytest.approx(0.25)
    assert guide_trace.nodes["tau"]["scale"] == pytest.approx(0.25)
    assert model_trace.nodes["z"]["scale"] == pytest.approx(0.5 / 256)
    assert guide_trace.nodes["z"]["scale"] == pytest.approx(0.5 / 256)
    assert model_trace.nodes["x"]["scale"] == pytest.approx(3.0 / 256)
    assert model_trace.nodes["r"]["scale"] == pytest.approx(0.125)
    assert model_trace.nodes["y"]["scale"] == pytest.approx(2.0 / 256)
    assert "y_dice" not in model_trace.nodes  # dice_weight 0: the plain likelihood


def test_per_pixel_objective_does_not_depend_on_the_image_size():
    """An image and annotation upsampled 2x (every pixel repeated) with the latent map's mean repeated
    alike give the same per-pixel terms: the ELBO's pixel parts do not grow with the image."""
    torch.manual_seed(0)
    config = tiny_config(image_size=8, depth=1)
    model = ProSegModel(config).requires_grad_(False)
    x, y = torch.randn(2, 1, 8, 8), torch.randint(0, 2, (2, 4, 8, 8))
    z = torch.zeros(2, 4, config.z_channels, 8, 8)
    tau = torch.full((2, 4, config.tau_dim), 1 / config.tau_dim)
    big = lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2)  # noqa: E731

    def pixel_terms(x, y, z):
        trace = poutine.trace(poutine.condition(model, data={"z": z, "tau": tau})).get_trace(x, y)
        trace.compute_log_prob()
        return [float(trace.nodes[name]["log_prob"].sum()) for name in ("x", "y", "z")]  # scaled by Pyro

    small, large = pixel_terms(x, y, z), pixel_terms(big(x), big(y), big(z))
    # the 1x1 predictor sees the same values; the decoder's 3x3 convolutions see blocks, so x differs slightly
    assert large[1] == pytest.approx(small[1], rel=1e-5) and large[2] == pytest.approx(small[2], rel=1e-5)
    assert large[0] == pytest.approx(small[0], rel=0.2)


def test_dice_factor_adds_the_weighted_soft_dice_per_slot(batch):
    x, y, mask = batch
    mask = mask.clone()
    mask[2, 3] = False
    config = tiny_config(dice_weight=0.5)
    model_trace, _ = _traces(config, x, y, mask)
    model_trace.compute_log_prob()
    factor = model_trace.nodes["y_dice"]
    probs = model_trace.nodes["y"]["fn"].base_dist.probs[..., 1]  # (B, R, H, W)
    truth = y.float()
    dice = (2 * (probs * truth).sum((-2, -1)) + 1) / (probs.sum((-2, -1)) + truth.sum((-2, -1)) + 1)
    expected = 0.5 * (dice - 1) * mask
    torch.testing.assert_close(factor["log_prob"], expected)  # Pyro's log_prob holds the scale and mask


@pytest.mark.parametrize("tau_prior,y_likelihood", [("logistic_normal", "categorical"), ("dirichlet", "bernoulli")])
def test_alternative_prior_and_likelihood_give_finite_elbo_gradients(batch, tau_prior, y_likelihood):
    config = tiny_config(tau_prior=tau_prior, y_likelihood=y_likelihood)
    model, guide = ProSegModel(config), ProSegGuide(config)
    loss = pyro.infer.Trace_ELBO(max_plate_nesting=2)(model, guide)
    value = loss(*batch)
    value.backward()
    assert torch.isfinite(value)
    assert all(torch.isfinite(p.grad).all() for p in loss.parameters() if p.grad is not None)
    model_trace, _ = _traces(config, *batch)
    expected = dist.Dirichlet if tau_prior == "dirichlet" else dist.LogisticNormal
    assert isinstance(model_trace.nodes["tau"]["fn"], expected)


def test_networks_take_extra_leading_batch_dims():
    config = tiny_config()
    model = ProSegModel(config)
    tau = torch.distributions.Dirichlet(torch.ones(config.tau_dim)).sample((5, 3, 4))
    z = torch.randn(5, 3, 4, config.z_channels, 16, 16)
    probs = model.class_probs(tau, z)
    assert probs.shape == (5, 3, 4, 16, 16, 2)
    flat = model.class_probs(tau.reshape(60, -1), z.reshape(60, *z.shape[3:]))
    torch.testing.assert_close(probs.reshape(60, 16, 16, 2), flat)



def _concatenated_logits(predictor, z, tau, offset):
    """The predictor as the paper writes it: a 1x1 conv over [z, tau tiled at every pixel], then the MLP."""
    lead = torch.broadcast_shapes(z.shape[:-3], tau.shape[:-1])
    z, tau = z.expand(*lead, *z.shape[-3:]), tau.expand(*lead, tau.shape[-1])
    inputs = torch.cat([z, tau[..., None, None].expand(*tau.shape, *z.shape[-2:])], -3).flatten(0, -4)
    weight = torch.cat([predictor.from_z.weight, predictor.from_tau.weight[..., None, None]], 1)
    first = torch.nn.functional.conv2d(inputs, weight, predictor.from_z.bias).movedim(1, -1)  # (M, H, W, hidden)
    first = first.reshape(*lead, *first.shape[1:]) + offset[..., None, None, :]
    return predictor.rest(first)


@pytest.mark.parametrize("z_lead,tau_lead", [((3, 4), (3, 4)), ((3, 1), (3, 4)), ((2, 3, 4), (3, 4))])
def test_predictor_equals_the_mlp_over_concatenated_inputs(z_lead, tau_lead):
    torch.manual_seed(0)
    predictor = ProSegModel(tiny_config()).predictor
    z = torch.randn(*z_lead, 4, 6, 5)
    tau = dist.Dirichlet(torch.ones(8)).sample(tau_lead)
    offset = torch.randn(tau_lead[-1], 8)
    expected = _concatenated_logits(predictor, z, tau, offset)
    torch.testing.assert_close(predictor(z, tau, offset), expected, rtol=1e-5, atol=1e-5)
    readout = torch.tensor([-1.0, 1.0])
    torch.testing.assert_close(predictor(z, tau, offset, readout=readout), expected @ readout, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("y_likelihood,classes,kernel", [("categorical", 2, 1), ("categorical", 3, 1),
                                                          ("bernoulli", 2, 1), ("categorical", 2, 3)])
def test_foreground_probs_are_one_minus_the_background_class(y_likelihood, classes, kernel):
    torch.manual_seed(0)
    model = ProSegModel(tiny_config(y_likelihood=y_likelihood, num_classes=classes, predictor_kernel=kernel))
    tau = dist.Dirichlet(torch.ones(8)).sample((3, 4))
    z = 3 * torch.randn(3, 4, 4, 16, 16)
    foreground = model.foreground_probs(tau, z)
    assert foreground.shape == (3, 4, 16, 16)
    torch.testing.assert_close(foreground, 1 - model.class_probs(tau, z)[..., 0], rtol=1e-5, atol=1e-6)


def _backward_nodes(tensor: torch.Tensor) -> set[str]:
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.parametrize("kernel", [1, 3])
def test_predictor_backward_copies_no_activation_maps(kernel):
    """The in-place ReLUs act on new tensors, never on views: a view changed in place makes backward
    copy the whole activation map (CopySlices), a tenth of a training step at paper size."""
    model = ProSegModel(tiny_config(predictor_kernel=kernel))
    z = torch.randn(3, 4, 4, 16, 16, requires_grad=True)
    tau = dist.Dirichlet(torch.ones(8)).sample((3, 4))
    nodes = _backward_nodes(model.predictor(z, tau))
    assert {"BmmBackward0" if kernel == 1 else "ConvolutionBackward0", "AddmmBackward0", "ReluBackward0"} <= nodes
    assert not {"CopySlices", "AsStridedBackward0"} & nodes, nodes


def test_every_rater_starts_with_a_preference_of_its_own():
    """Seven raters with T = 8: seven different starting concentrations (the first four as the
    released code: entries a and a + 4)."""
    start = torch.nn.functional.softplus(ProSegGuide(tiny_config(num_raters=7)).tau_concentration_raw.detach())
    assert len({tuple(row) for row in start.round(decimals=3).tolist()}) == 7
    for rater in range(4):
        assert set(torch.nonzero(start[rater] > start.max() / 2).flatten().tolist()) == {rater, rater + 4}


def test_paper_sized_backbone_is_a_resnet34_unet_that_trains():
    """The ResNet-34 encoder has torchvision's 21.3 M parameters (less its classifier, with GroupNorm's
    affine weights for BatchNorm's), the whole U-Net ~24 M; ProSeg with it gives a finite ELBO and gradients."""
    from proseg_pyro.networks import ResNetUNet

    network = ResNetUNet(1, 16)
    encoder = sum(p.numel() for part in (network.stem, network.stages) for p in part.parameters())
    assert 21.2e6 < encoder < 21.4e6
    assert network(torch.randn(2, 1, 64, 96)).shape == (2, 16, 64, 96)
    config = tiny_config(backbone="resnet34", image_size=32)
    model, guide = ProSegModel(config), ProSegGuide(config)
    assert sum(p.numel() for p in guide.backbone.parameters()) > 20e6
    loss = pyro.infer.Trace_ELBO(max_plate_nesting=2)(model, guide)
    value = loss(torch.randn(2, 1, 32, 32), torch.randint(0, 2, (2, 4, 32, 32)))
    value.backward()
    assert torch.isfinite(value) and all(torch.isfinite(p.grad).all() for p in guide.backbone.parameters())
