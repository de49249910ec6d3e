"""A method an installed package offers through the ``proseg_pyro.methods`` entry points: the command
line lists it, trains it and reloads its checkpoint; a plugin that fails to load is a one-line error."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from proseg_pyro import methods, names
from proseg_pyro.checkpoint import load_checkpoint

from .conftest import tiny_config

PLUGIN_MODULE = '''
import dataclasses
from proseg_pyro.baselines import pooled_unet
METHOD = dataclasses.replace(pooled_unet.METHOD, name="wide_unet")
MISNAMED = dataclasses.replace(pooled_unet.METHOD, name="other")
'''
ENTRY_POINTS = """[proseg_pyro.methods]
wide_unet = proseg_plugin_demo:METHOD
broken = proseg_missing_module:METHOD
misnamed = proseg_plugin_demo:MISNAMED
"""


@pytest.fixture
def plugin_site(tmp_path):
    """A folder holding an installed distribution (its ``.dist-info``) with three method entry points."""
    site = tmp_path / "site"
    info = site / "proseg_plugin_demo-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: proseg-plugin-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (site / "proseg_plugin_demo.py").write_text(PLUGIN_MODULE)
    return site


@pytest.fixture(autouse=True)
def fresh_plugin_names():
    """The plugin names read anew after each test, whose sys.path may have held the package."""
    yield
    names.plugin_method_names.cache_clear()


def _cli(site, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    return subprocess.run([sys.executable, "-c", "from proseg_pyro.cli.main import main; main()", *args],
                          capture_output=True, text=True, env=env)


def test_an_installed_method_trains_from_the_command_line_and_reloads(plugin_site, tmp_path, monkeypatch):
    listed = _cli(plugin_site, "train", "--help")
    assert "wide_unet" in listed.stdout
    tiny_config(steps=2, val_every=2).to_json(tmp_path / "config.json")
    run = tmp_path / "run"
    trained = _cli(plugin_site, "train", "--config", str(tmp_path / "config.json"), "--method", "wide_unet",
                   "--out", str(run), "--device", "cpu")
    assert trained.returncode == 0, trained.stderr
    monkeypatch.syspath_prepend(str(plugin_site))  # this process now has the package too
    names.plugin_method_names.cache_clear()
    monkeypatch.setattr(methods, "METHODS", dict(methods.METHODS))  # the loaded plugin stays in this test
    model, _, config = load_checkpoint(run / "best.pt", method=None)
    assert config.method == "wide_unet" and methods.get_method("wide_unet").build is methods.METHODS["unet_pooled"].build
    assert type(model) is type(methods.METHODS["unet_pooled"].build(config)[0])


@pytest.mark.parametrize("name,problem", [("broken", "proseg_missing_module:METHOD' did not load: ModuleNotFoundError"),
                                          ("misnamed", "is not a Method named 'misnamed'")])
def test_a_plugin_that_does_not_load_is_a_one_line_error(plugin_site, tmp_path, name, problem):
    tiny_config(steps=2).to_json(tmp_path / "config.json")
    failed = _cli(plugin_site, "train", "--config", str(tmp_path / "config.json"), "--method", name,
                  "--out", str(tmp_path / "run"), "--device", "cpu")
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and f"method {name!r}" in lines[0] and problem in lines[0], failed.stderr
