"""The bench runs and reports every number; its baselines and the fast paths compute what they replace."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import proseg_pyro.cli.bench  # noqa: F401  (registers the command)
from proseg_pyro import inference
from proseg_pyro.benchmarks.handwritten import handwritten_loss
from proseg_pyro.benchmarks.loops import metrics_loop, sample_loop, sample_loop_raters_batched
from proseg_pyro.benchmarks.suite import BenchSize, report, run
from proseg_pyro.cli.main import cli
from proseg_pyro.metrics import batch_metrics
from proseg_pyro.networks import UNet
from proseg_pyro.train import build

from .conftest import tiny_config
from .helpers import one_thread  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = BenchSize(image_size=16, batch=2, raters=2, samples=2, prior_samples=2, metric_images=3, metric_chunk=2,
                 loop_images=2, metric_samples=3, fit_images=6, repeats=1)


def test_bench_reports_every_case_and_target():
    result = run(TINY, torch.device("cpu"))
    assert {"pyro_step_s", "handwritten_step_s", "overhead", "step_images_per_s", "pyro_step_peak_gib",
            "handwritten_step_peak_gib", "train_step_s", "train_images_per_s", "fit_images_per_s",
            "fit_peak_gib"} <= result["training"].keys()
    assert {"vectorised_s", "loop_s", "speedup", "loop_raters_batched_s", "speedup_raters_batched", "images_per_s",
            "prior_seconds", "vectorised_peak_gib", "loop_peak_gib", "loop_raters_batched_peak_gib",
            "prior_peak_gib"} <= result["sampling"].keys()
    assert {"batched_seconds", "batched_images_per_s", "loop_seconds_per_image", "speedup", "max_difference",
            "batched_peak_gib", "loop_peak_gib"} <= result["metrics"].keys()
    assert result["metrics"]["max_difference"] < 1e-9
    backbones = result["backbones"]
    assert backbones["small_parameters_m"] < 2 < 20 < backbones["resnet34_parameters_m"]
    assert backbones["resnet34_slowdown"] == backbones["resnet34_step_s"] / backbones["small_step_s"]
    assert [row["metric"] for row in result["targets"]] == [
        "training.overhead", "training.train_images_per_s", "training.fit_peak_gib", "sampling.speedup",
        "sampling.prior_seconds", "metrics.batched_seconds"]
    text = report(result)
    assert "SVI step" in text and "targets" in text and "overhead" in text and "ResNet-34 U-Net" in text


def test_bench_command_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["bench", "--image-size", "16", "--batch", "2", "--raters", "2", "--samples", "2", "--prior-samples", "2",
            "--metric-images", "2", "--fit-images", "6", "--repeats", "1", "--json", str(out)]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "speed-up" in result.output
    assert json.loads(out.read_text())["size"]["image_size"] == 16


@pytest.mark.parametrize("z_head", ["shared", "per_rater", "per_rater_sliced"])
def test_handwritten_loss_is_the_pyro_elbo(z_head):
    """Same RNG state, same estimate and gradients: the overhead ratio compares like with like."""
    model, guide, elbo = build(tiny_config(z_head=z_head))
    x, y, mask = torch.randn(3, 1, 16, 16), torch.randint(0, 2, (3, 4, 16, 16)), torch.rand(3, 4) > 0.3
    params = list(elbo.parameters())
    torch.manual_seed(7)
    pyro_loss = elbo(x, y, mask)
    pyro_grads = torch.autograd.grad(pyro_loss, params)
    torch.manual_seed(7)
    hand_loss = handwritten_loss(model, guide, x, y, mask)
    hand_grads = torch.autograd.grad(hand_loss, params)
    torch.testing.assert_close(hand_loss, pyro_loss, rtol=1e-6, atol=0)
    for hand, reference in zip(hand_grads, pyro_grads):
        torch.testing.assert_close(hand, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())


def test_checkpointed_unet_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = UNet(1, 4, base=4, depth=2)
    checkpointed = UNet(1, 4, base=4, depth=2, checkpoint=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 1, 16, 16)
    for net in (plain, checkpointed):
        net(x).square().sum().backward()
    for a, b in zip(plain.parameters(), checkpointed.parameters()):
        assert torch.equal(a.grad, b.grad)


def test_sampling_in_tiles_gives_the_samples_of_one_pass():
    model, guide, _ = build(tiny_config())
    tau, z = torch.rand(3, 2, 4, 8).softmax(-1), torch.randn(3, 2, 4, 4, 16, 16)
    whole = inference._predict(model, tau, z, torch.empty(3, 2, 4, 16, 16, 2), tile=z.numel())
    tiled = inference._predict(model, tau, z, torch.empty(3, 2, 4, 16, 16, 2), tile=1)
    torch.testing.assert_close(tiled, whole, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(model.class_probs(tau, z), whole)
    foreground = inference._predict(model, tau, z, torch.empty(3, 2, 4, 16, 16), tile=1)
    torch.testing.assert_close(foreground, 1 - whole[..., 0], rtol=1e-5, atol=1e-6)
    x = torch.randn(2, 1, 16, 16)
    for loop in (sample_loop, sample_loop_raters_batched):
        samples = loop(model, guide, x, [0, 3], 3)
        assert samples.shape == (3, 2, 2, 16, 16) and ((samples >= 0) & (samples <= 1)).all()
    torch.manual_seed(0)  # one draw per call is the vectorised draw of one sample of one rater
    one = sample_loop(model, guide, x, [3], 1)
    torch.manual_seed(0)
    torch.testing.assert_close(one, inference.personalised(model, guide, x, [3], 1))


def test_metric_loop_is_batch_metrics():
    rng = np.random.default_rng(0)
    annotations, probabilities = rng.random((3, 4, 16, 16)) > 0.6, rng.random((3, 6, 16, 16)).astype(np.float32)
    batched = batch_metrics(annotations, None, probabilities)
    for index in range(3):
        looped = metrics_loop(annotations[index], probabilities[index])
        for key, value in looped.items():
            assert value == pytest.approx(batched[key][index], abs=1e-12), key


def test_large_set_case_trains_from_the_memory_mapped_cache():
    from proseg_pyro.benchmarks.large_set import bench_large_set

    config = tiny_config(num_raters=2, batch_size=2)
    result = bench_large_set(230, config, torch.device("cpu"), steps=2)  # volumes of 100 (val), 100 (test), 30 (train)
    # images float32 and uint8 labels of 230 slices of 16x16, 2 raters, in the cache
    assert result["cache_gib"] * 2 ** 30 >= 230 * 16 * 16 * (4 + 2)
    assert result["train_peak_gib"] is None or 0 < result["train_peak_gib"] < 3
    assert result["slices"] == 230 and result["steps"] == 2
