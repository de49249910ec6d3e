"""A method, a tau family and an annotation likelihood added from outside the package train through
the library's loop, reload and evaluate: each registry entry is all a new choice takes."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

from proseg_pyro import load_checkpoint, methods, tau_families
from proseg_pyro.baselines.common import EmptyGuide, annotation_plates, as_observation, deterministic_method
from proseg_pyro.errors import ConfigError
from proseg_pyro.evaluate import evaluate
from proseg_pyro.likelihoods import Y_LIKELIHOODS, AnnotationLikelihood
from proseg_pyro.tau_families import TauFamily
from proseg_pyro.train import fit

from .conftest import tiny_config


class PooledLogistic(PyroModule):
    """Every rater's annotation ~ Bernoulli(sigmoid(w x + b)) per pixel: one pooled logistic regression."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.pixel = nn.Conv2d(config.in_channels, 1, 1)

    def rater_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, R, H, W): the same map for every rater."""
        return torch.sigmoid(self.pixel(x)).expand(-1, self.config.num_raters, -1, -1)

    def forward(self, x, y=None, mask=None):
        logits = self.pixel(x).expand(-1, self.config.num_raters, -1, -1)  # (B, R, H, W)
        with annotation_plates(x, self.config.num_raters, mask):
            pyro.sample("y", dist.Bernoulli(logits=logits).to_event(2), obs=as_observation(y, x))


POOLED = deterministic_method("pooled_logistic", lambda config: (PooledLogistic(config), EmptyGuide(config)),
                              "a per-pixel logistic regression of the pooled annotations")

# q(tau | r) = Dirichlet(exp(l_r)), a log-concentration per rater; tau* ~ the model's prior
LOG_DIRICHLET = TauFamily(
    prior=lambda dim, alpha0, like: dist.Dirichlet(like.new_full((dim,), alpha0)),
    initial_parameters=lambda config, slots: {"tau_log_concentration": torch.zeros(slots, config.tau_dim)},
    posterior=lambda rows, config: dist.Dirichlet(rows["tau_log_concentration"].exp()),
    sampling_prior=lambda config, alpha, like, model_prior, raters_posterior: model_prior())


def _tempered(logits: torch.Tensor) -> torch.Tensor:
    return logits / 2


# a categorical at temperature 2, without a foreground readout (the general path)
TEMPERED = AnnotationLikelihood(
    channels=lambda classes: classes,
    dist=lambda logits: dist.Categorical(logits=_tempered(logits)).to_event(2),
    probs=lambda logits: _tempered(logits).softmax(-1),
    foreground=lambda logits: 1 - _tempered(logits).softmax(-1)[..., 0],
    foreground_readout=lambda classes: None,
    probs_of=lambda distribution: distribution.base_dist.probs)


@pytest.fixture
def registered(monkeypatch):
    """The three new entries, removed again after the test."""
    monkeypatch.setitem(methods.METHODS, POOLED.name, POOLED)
    monkeypatch.setitem(tau_families.TAU_FAMILIES, "log_dirichlet", LOG_DIRICHLET)
    monkeypatch.setitem(Y_LIKELIHOODS, "tempered", TEMPERED)


def _train_reload_and_evaluate(config, tiny_set, out):
    slices, _ = tiny_set
    config = config.replace(steps=1, val_every=1, num_raters=len(slices.raters), rater_names=list(slices.raters))
    fit(config, slices.split("train"), slices.split("val"), out, progress=False)
    model, guide, loaded = load_checkpoint(out / "last.pt")
    assert loaded == config
    rows = evaluate(model, guide, slices.split("test").select(range(4)), num_samples=4, per="slice").rows
    assert set(rows) >= {"personalised", "prior"}
    assert all(math.isfinite(value) for row in rows.values() for value in row.values() if isinstance(value, float))
    return model, guide


def test_a_new_method_trains_reloads_and_evaluates(registered, tiny_set, tmp_path):
    model, _ = _train_reload_and_evaluate(tiny_config(method="pooled_logistic"), tiny_set, tmp_path)
    assert isinstance(model, PooledLogistic) and "pooled_logistic" in methods.trainable()
    fresh = PooledLogistic(model.config)
    assert not torch.equal(fresh.pixel.weight, model.pixel.weight) or not torch.equal(fresh.pixel.bias, model.pixel.bias)


def test_a_new_tau_family_sets_the_guides_parameters_and_trains(registered, tiny_set, tmp_path):
    model, guide = _train_reload_and_evaluate(tiny_config(tau_prior="log_dirichlet"), tiny_set, tmp_path)
    assert [name for name, _ in guide.named_parameters() if name.startswith("tau")] == ["tau_log_concentration"]
    assert guide.rater_parameters() == [guide.tau_log_concentration]
    assert guide.tau_log_concentration.abs().sum() > 0  # one Adam step moved it from 0
    torch.testing.assert_close(guide.tau_dist(torch.tensor([1])).concentration, guide.tau_log_concentration[1:2].exp())
    assert isinstance(model.tau_prior(), dist.Dirichlet)


def test_a_new_annotation_likelihood_is_the_models(registered, tiny_set, tmp_path):
    model, _ = _train_reload_and_evaluate(tiny_config(y_likelihood="tempered"), tiny_set, tmp_path)
    assert model.y_family is TEMPERED
    tau, z = torch.full((1, model.config.tau_dim), 1 / model.config.tau_dim), torch.randn(1, model.config.z_channels, 4, 4)
    logits = model.predictor(z, tau)
    torch.testing.assert_close(model.foreground_probs(tau, z), 1 - (logits / 2).softmax(-1)[..., 0])


def test_names_outside_the_registries_are_refused():
    for field in ("method", "tau_prior", "y_likelihood"):
        with pytest.raises(ConfigError, match=f"{field} must be one of"):
            tiny_config(**{field: "log_dirichlet" if field == "tau_prior" else "nothing"})
