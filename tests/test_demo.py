"""The demo's library steps: the built-in set written and read back, a tiny run scored beside the oracle."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from proseg_pyro.demo import format_matrix, train_and_score, write_builtin_set
from proseg_pyro.errors import DataError

from .conftest import tiny_config


def test_the_written_set_reads_back_and_a_tiny_run_is_scored_beside_the_oracle(tmp_path):
    slices, truth, manifest = write_builtin_set(24, 16, seed=2, folder=tmp_path / "data")
    assert manifest.exists() and len(slices) == 24
    config = tiny_config(steps=2, val_every=1).fitted_to(slices)
    _, evaluation = train_and_score(slices, truth, config, tmp_path / "model", num_samples=4)
    assert list(evaluation.rows) == ["personalised", "prior", "oracle personalised", "oracle prior"]
    # the true rater model against a model of two steps
    rows = evaluation.rows
    assert rows["oracle personalised"]["dice_match"] > rows["personalised"]["dice_match"]
    assert np.array(evaluation.cross_rater_dice["oracle personalised"]).shape == (4, 4)
    assert (tmp_path / "model" / "best.pt").exists()


def test_a_set_that_does_not_read_back_is_refused(tmp_path, monkeypatch):
    import proseg_pyro.demo as demo

    real = demo.load_dataset

    def emptied(*args, **kwargs):
        slices = real(*args, **kwargs)
        return dataclasses.replace(slices, annotations=np.zeros_like(slices.annotations))

    monkeypatch.setattr(demo, "load_dataset", emptied)
    with pytest.raises(DataError, match="does not read back identically"):
        write_builtin_set(24, 16, seed=2, folder=tmp_path / "data")


def test_format_matrix_aligns_names_and_three_decimals():
    text = format_matrix(np.array([[0.0, 0.25], [0.125, 1.0]]), ["a", "bb"])
    assert text.splitlines() == ["" .ljust(8) + "a".rjust(8) + "bb".rjust(8),
                                 "a".ljust(8) + "0.000".rjust(8) + "0.250".rjust(8),
                                 "bb".ljust(8) + "0.125".rjust(8) + "1.000".rjust(8)]
