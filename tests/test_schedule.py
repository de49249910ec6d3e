"""The training budget: steps from epochs, and the learning rate's warm-up and decay."""
from __future__ import annotations

import math

import pytest

from proseg_pyro.schedule import learning_rate, total_steps

from .conftest import tiny_config


def test_steps_are_the_budget_unless_epochs_are_given():
    assert total_steps(tiny_config(steps=123), train_images=1000) == 123
    # 2 passes over 30 images in batches of 8: ceil(60 / 8)
    assert total_steps(tiny_config(steps=123, epochs=2, batch_size=8), train_images=30) == 8


def test_warm_up_rises_linearly_then_the_cosine_decays_to_one_percent():
    config = tiny_config(lr=1.0, warmup_steps=4, lr_schedule="cosine")
    rates = [learning_rate(config, step, 104) for step in range(104)]
    assert rates[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert rates[4] == pytest.approx(1.0)
    assert rates[54] == pytest.approx(0.01 + 0.99 * 0.5)  # half way through the decay
    assert rates[-1] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))


def test_poly_and_constant_schedules():
    poly = tiny_config(lr=0.5, warmup_steps=0, lr_schedule="poly")
    assert learning_rate(poly, 0, 10) == pytest.approx(0.5)
    assert learning_rate(poly, 5, 10) == pytest.approx(0.5 * 0.5 ** 0.9)
    constant = tiny_config(lr=0.5, warmup_steps=0, lr_schedule="constant")
    assert {learning_rate(constant, step, 10) for step in range(10)} == {0.5}


def test_a_run_shorter_than_its_warm_up_still_reaches_its_rate():
    config = tiny_config(lr=1.0, warmup_steps=50)
    assert learning_rate(config, 1, 2) == pytest.approx(1.0)
