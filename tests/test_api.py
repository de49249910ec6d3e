"""The package root's entry points: light to import, and sampling works for every method's model."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import proseg_pyro
from proseg_pyro.checkpoint import save_checkpoint
from proseg_pyro.methods import get_method, trainable

from .conftest import tiny_config


def test_importing_the_package_loads_neither_torch_nor_pyro():
    code = "import sys, proseg_pyro; print(sorted({'torch', 'pyro'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_entry_points_are_the_library_functions():
    from proseg_pyro import data, metrics, methods, train

    assert proseg_pyro.fit is train.fit and proseg_pyro.load_dataset is data.load_dataset
    assert proseg_pyro.image_metrics is metrics.image_metrics
    assert proseg_pyro.personalised is methods.personalised and proseg_pyro.prior is methods.prior
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        proseg_pyro.nothing  # noqa: B018


@pytest.mark.parametrize("method", trainable())
def test_personalised_and_prior_sample_every_method(method):
    torch.manual_seed(0)
    model, guide = get_method(method).build(tiny_config(method=method))
    model.eval(), guide.eval()
    x = torch.randn(2, 1, 16, 16)
    personal = proseg_pyro.personalised(model, guide, x, [3, 0], 3)
    diverse = proseg_pyro.prior(model, guide, x, 5)
    assert personal.shape == (3, 2, 2, 16, 16) and diverse.shape == (5, 2, 16, 16)
    for probs in (personal, diverse):
        assert torch.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1


@pytest.mark.parametrize("method", ["proseg", "proseg_no_tau", "proseg_no_z"])
def test_load_checkpoint_rebuilds_any_method_with_its_weights(method, tmp_path):
    config = tiny_config(method=method)
    model, guide = get_method(method).build(config)
    save_checkpoint(tmp_path / "run.pt", method=method, config=config.to_dict(), model=model.state_dict(),
                    guide=guide.state_dict())
    loaded_model, loaded_guide, loaded_config = proseg_pyro.load_checkpoint(tmp_path / "run.pt")
    assert loaded_config == config and not loaded_model.training and not loaded_guide.training
    for before, after in ((model, loaded_model), (guide, loaded_guide)):
        state = after.state_dict()
        assert state.keys() == before.state_dict().keys()
        assert all(torch.equal(value, state[name]) for name, value in before.state_dict().items())


def test_the_weights_keep_the_names_earlier_checkpoints_hold():
    """Checkpoints written before the tau families and the composed ablations load unchanged."""
    def parameters(method, **overrides):
        model, guide = get_method(method).build(tiny_config(method=method, **overrides))
        return ({name.split(".")[0] for name in model.state_dict()}, {name.split(".")[0] for name in guide.state_dict()})

    assert parameters("proseg") == ({"image_decoder", "classifier", "predictor"},
                                    {"backbone", "z_heads", "tau_concentration_raw"})
    assert parameters("proseg", tau_prior="logistic_normal")[1] == {"backbone", "z_heads", "tau_loc", "tau_scale_raw"}
    assert parameters("proseg_no_tau") == ({"image_decoder", "predictor"}, {"backbone", "z_heads"})
    assert parameters("proseg_no_z") == ({"classifier", "backbone", "predictor"}, {"tau_concentration_raw"})
