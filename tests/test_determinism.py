"""The same seed and config give the same parameters and the same evaluation numbers on CPU."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import proseg_pyro.cli.evaluate  # noqa: F401  (registers the command)
from proseg_pyro.checkpoint import read_checkpoint
from proseg_pyro.cli.main import cli
from proseg_pyro.train import fit

from .conftest import tiny_config
from .helpers import one_thread, same_weights  # noqa: F401  (one_thread: a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tiny_set, tmp_path_factory):
    """Checkpoints of three runs: two with seed 0, one with seed 1 (augmentation on, 6 steps, 2 validations)."""
    slices, _ = tiny_set
    train, val = slices.split("train"), slices.split("val")
    out = {}
    for name, seed in (("first", 0), ("second", 0), ("other seed", 1)):
        config = tiny_config(seed=seed, augment=True).fitted_to(slices)
        out[name] = tmp_path_factory.mktemp("run") / "last.pt"
        fit(config, train, val, out[name].parent, progress=False)
    return out


def test_same_seed_same_parameters(runs):
    first, second = read_checkpoint(runs["first"]), read_checkpoint(runs["second"])
    assert same_weights(first, second)
    assert first["history"] == [{**row, "seconds": first_row["seconds"]}
                                for row, first_row in zip(second["history"], first["history"])]
    assert not same_weights(first, read_checkpoint(runs["other seed"]))


def test_same_seed_same_evaluation(runs, tmp_path):
    tables = []
    for name in ("first", "second"):
        tables.append(tmp_path / f"{name}.json")
        argv = ["evaluate", str(runs[name]), "--samples", "4", "--device", "cpu", "--json", str(tables[-1])]
        result = CliRunner().invoke(cli, argv, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    first, second = (json.loads(table.read_text()) for table in tables)
    assert first == second
    assert first["rows"]["personalised"]["ged"] > 0
