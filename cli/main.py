"""Entry point of the ``proseg-pyro`` command: a click group whose commands live in sibling modules."""
from __future__ import annotations

import sys

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
    from . import synth  # noqa: F401  (each module adds its command to `cli`)


def main() -> None:
    _register()
    cli()
