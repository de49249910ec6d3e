"""The command group: every command listed, each module imported only when its command runs."""
from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from proseg_pyro.cli.main import cli

COMMANDS = ("bench", "compare", "demo", "enrol", "evaluate", "figures", "identify", "predict", "sample", "synth",
            "train")


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].strip().splitlines()]
    assert listed == list(COMMANDS)


def test_training_does_not_load_the_scan_readers():
    """SimpleITK (~90 MB resident), h5py and matplotlib stay out of a process that trains from memory."""
    code = ("import sys, proseg_pyro.train, proseg_pyro.baselines, proseg_pyro.cli.main, proseg_pyro.cli.train; "
            "print(sorted({'SimpleITK', 'h5py', 'matplotlib'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
