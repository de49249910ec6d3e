"""Entry point of the ``proseg-pyro`` command: a click group whose commands live in sibling modules."""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import click

from proseg_pyro.errors import ProSegError


class _Group(click.Group):
    """A click group that reports the package's errors as one line with exit code 2."""

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


def _register() -> None:
    """Import every sibling module: each one adds its command to ``cli``."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__package__}.{module.name}")


def main() -> None:
    _register()
    cli()
