"""The data options: one ``--data PATH``, with ``--lidc`` and ``--npc`` as hidden old names of it."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from proseg_pyro.cli.common import data_options


@click.command()
@data_options
def show(source: dict) -> None:
    click.echo(f"{source['path']} {source['rank_raters']} {source['fold']}")


@pytest.mark.parametrize("option", ["--data", "--lidc", "--npc"])
def test_every_name_of_the_data_option_gives_the_same_source(option):
    result = CliRunner().invoke(show, [option, "set.pkl", "--keep-raters", "--fold", "2"])
    assert result.exit_code == 0 and result.output == "set.pkl keep 2\n"


def test_no_data_option_is_the_built_in_set_and_the_old_names_are_hidden():
    assert CliRunner().invoke(show, []).output == "synthetic area 0\n"
    help_text = CliRunner().invoke(show, ["--help"]).output
    assert "--data" in help_text and "--lidc" not in help_text and "--npc" not in help_text


def test_two_data_sources_are_a_usage_error():
    result = CliRunner().invoke(show, ["--data", "a.json", "--npc", "b"])
    assert result.exit_code == 2 and "give one data source: --data PATH" in result.output
