"""The command group: every command listed, each module imported only when its command runs."""
from __future__ import annotations

import subprocess
import sys

import click
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


def test_help_of_every_command_imports_no_heavy_library():
    """``--help`` stays fast: torch, Pyro, SimpleITK, matplotlib and h5py load only inside a command that runs."""
    code = ("import sys; from click.testing import CliRunner; from proseg_pyro.cli.main import cli; "
            f"codes = [CliRunner().invoke(cli, [*args, '--help']).exit_code "
            f"for args in ([], *[[c] for c in {COMMANDS}])]; "
            "print(codes, sorted({'torch', 'pyro', 'SimpleITK', 'matplotlib', 'h5py'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{[0] * (len(COMMANDS) + 1)} []"


def test_every_option_has_a_help_text_and_shows_its_default():
    ctx = click.Context(cli)
    for name in COMMANDS:
        for option in cli.get_command(ctx, name).params:
            if not isinstance(option, click.Option):
                continue
            assert option.help, (name, option.opts)
            default = option.get_default(ctx, call=False)
            has_default = (not (option.is_flag or option.required or option.multiple)
                           and default is not None and type(default).__name__ != "Sentinel")  # click >= 8.3: UNSET
            assert option.show_default or not has_default, (name, option.opts)


def test_the_names_in_the_help_are_the_registered_ones():
    from proseg_pyro.baselines import CONSENSUS
    from proseg_pyro.methods import trainable
    from proseg_pyro.names import CONSENSUS_NAMES, METHOD_NAMES

    assert tuple(CONSENSUS) == CONSENSUS_NAMES
    assert trainable() == METHOD_NAMES
