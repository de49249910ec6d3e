"""Training learns each rater's style (through tau alone where one z head serves every rater), and a
resumed run equals an unbroken one."""
from __future__ import annotations

import pytest
import torch

from proseg_pyro import inference, metrics, train
from proseg_pyro.checkpoint import load_checkpoint, read_checkpoint
from proseg_pyro.train import fit

from .conftest import tiny_config

TIGHT, GENEROUS = 0, 1  # slots of the built-in styles


def _train(slices, out, **overrides):
    config = tiny_config(steps=160, val_every=40, lr=3e-3, lr_schedule="constant", **overrides).fitted_to(slices)
    fit(config, slices.split("train"), slices.split("val"), out, progress=False)
    return load_checkpoint(out / "last.pt")


@pytest.fixture(scope="module")
def trained(tiny_set, tmp_path_factory):
    """Trained with the default ``z`` heads: one per rater, each reading its slice of the features."""
    return _train(tiny_set[0], tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="module")
def trained_shared(tiny_set, tmp_path_factory):
    """Trained with one ``z`` head for every rater."""
    return _train(tiny_set[0], tmp_path_factory.mktemp("trained_shared"), z_head="shared")


def _areas(probabilities: torch.Tensor) -> torch.Tensor:
    """Mean predicted foreground fraction per rater: (S, B, N, H, W) -> (N,)."""
    return (probabilities > 0.5).float().mean(dim=(0, 1, 3, 4))


def test_learns_rater_styles(trained, tiny_set):
    """The generous rater's samples come out larger than the tight rater's, as in the data."""
    model, guide, _ = trained
    slices, _ = tiny_set
    test = slices.split("test")
    torch.manual_seed(0)
    x = torch.as_tensor(test.images)
    areas = _areas(inference.personalised(model, guide, x, [TIGHT, GENEROUS], 8))
    truth = torch.as_tensor(test.annotations[:, [TIGHT, GENEROUS]]).float().mean(dim=(0, 2, 3))
    assert truth[1] > 1.5 * truth[0]
    assert areas[1] > 1.3 * areas[0], (areas, truth)


def test_with_one_z_head_the_style_follows_tau(trained_shared, tiny_set):
    """z drawn for the tight rater with tau from the generous rater's q(tau|r) gives generous masks."""
    model, guide, _ = trained_shared
    slices, _ = tiny_set
    x = torch.as_tensor(slices.split("test").images)
    torch.manual_seed(1)
    z = guide.z_dist(x, torch.tensor([TIGHT])).sample((8,))  # (S, B, 1, Cz, H, W)
    tau = guide.tau_dist(torch.tensor([TIGHT, GENEROUS])).sample((8, len(x)))  # (S, B, 2, T)
    probs = 1 - model.class_probs(tau, z.expand(-1, -1, 2, -1, -1, -1))[..., 0]
    areas = _areas(probs)
    assert areas[1] > 1.3 * areas[0]


def test_prior_sampling_is_more_diverse_than_personalised_sampling(trained, tiny_set):
    """Prior draws reach every rater's style, and two of them lie further apart (d_pp) than two
    draws in one rater's style, on average over the raters."""
    model, guide, _ = trained
    slices, _ = tiny_set
    test = slices.split("test")
    x = torch.as_tensor(test.images)

    def d_pp(samples: torch.Tensor) -> float:  # (S, B, H, W)
        per_image = metrics.batch_metrics(test.annotations, test.mask, samples.transpose(0, 1).numpy())
        return float(per_image["d_pp"].mean())

    torch.manual_seed(2)
    prior, raters = inference.prior(model, guide, x, 32, return_raters=True)
    assert prior.shape == (32, len(test), 16, 16)
    assert len(raters.unique()) == len(slices.raters)
    personalised = inference.personalised(model, guide, x, range(len(slices.raters)), 32)
    own = [d_pp(personalised[:, :, rater]) for rater in range(len(slices.raters))]
    assert d_pp(prior) > sum(own) / len(own)


def test_resumed_run_ends_with_the_same_parameters(tiny_set, tmp_path):
    slices, _ = tiny_set
    config = tiny_config(steps=9, val_every=3, augment=True).fitted_to(slices)
    train, val = slices.split("train"), slices.split("val")
    fit(config, train, val, tmp_path / "unbroken", progress=False)
    fit(config, train, val, tmp_path / "broken", progress=False, stop_after=4)
    assert read_checkpoint(tmp_path / "broken" / "last.pt")["step"] == 2  # the step after it is lost
    fit(config, train, val, tmp_path / "broken", progress=False, resume=True)
    unbroken = read_checkpoint(tmp_path / "unbroken" / "last.pt")
    resumed = read_checkpoint(tmp_path / "broken" / "last.pt")
    assert resumed["step"] == unbroken["step"] == 8
    for part in ("model", "guide"):
        for name, value in unbroken[part].items():
            torch.testing.assert_close(resumed[part][name], value, rtol=0, atol=0)
    assert [row["train_loss"] for row in resumed["history"]] == [row["train_loss"] for row in unbroken["history"]]


def test_a_run_that_predicts_nothing_says_so(monkeypatch, tmp_path):
    """The log holds each validation's Dice and empty share; the command warns when the best model
    predicts no foreground on any validation image."""
    from click.testing import CliRunner

    import proseg_pyro.cli.train  # noqa: F401  (registers the command)
    from proseg_pyro.cli.main import cli

    monkeypatch.setattr(train, "validation_dice", lambda *args: (0.0, 1.0))
    tiny_config(steps=2, val_every=1).to_json(tmp_path / "tiny.json")
    result = CliRunner().invoke(cli, ["train", "--image-size", "16", "--config", str(tmp_path / "tiny.json"),
                                      "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "predicts no foreground on any validation image" in result.output
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert rows[0] == "step,lr,train_loss,val_loss,val_dice,val_empty,grad_norm,clipped,seconds" and len(rows) == 3
