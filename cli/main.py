"""Entry point of the ``proseg-pyro`` command: a click group whose commands live in sibling modules."""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import click

from proseg_pyro.errors import ProSegError


def _command_modules() -> list[str]:
    """The sibling modules that define a command, each named after its command."""
    return [module.name for module in pkgutil.iter_modules([str(Path(__file__).parent)])
            if module.name not in ("main", "common")]


class _Group(click.Group):
    """A click group whose commands are imported when named (so a command that reads no scans never
    loads SimpleITK, and startup stays light) and that reports the package's errors as one line with
    exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_command_modules()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in _command_modules():
            importlib.import_module(f"{__package__}.{name}")  # registers the command on ``cli``
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ProSegError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="proseg-pyro")
def cli() -> None:
    """ProSeg: probabilistic multi-rater segmentation (diversity and personalisation) in Pyro."""


def main() -> None:
    cli()
