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
        except click.ClickException:
            raise
        except ProSegError as err:
            message = str(err)
        except Exception as err:  # the last resort: classes of failure no check foresaw
            message = last_resort_message(err)
            if message is None:
                raise
        click.echo(f"Error: {message}", err=True)
        sys.exit(2)


_MEMORY_HINT = "out of memory; lower --samples, --batch-size or --image-size, or use a smaller input"


def last_resort_message(err: BaseException) -> str | None:
    """One line for a failure that escaped the commands' own checks, or None for a bug (whose
    traceback should be seen): the operating system refusing a file, input nested or recursive
    beyond Python's limit, text that is not UTF-8, memory running out."""
    if isinstance(err, MemoryError) or (isinstance(err, RuntimeError) and _allocator_failure(str(err))):
        return _MEMORY_HINT
    if isinstance(err, OSError):
        where = " -> ".join(str(name) for name in (err.filename, err.filename2) if name is not None)
        return f"{where}: {err.strerror or err}" if where else f"{err.strerror or err}"
    if isinstance(err, RecursionError):
        return "input nested too deeply (or a symlink or reference loop)"
    if isinstance(err, UnicodeDecodeError):
        return f"an input is not UTF-8 text ({err.reason} at byte {err.start})"
    return None


def _allocator_failure(text: str) -> bool:
    return any(sign in text for sign in ("can't allocate memory", "out of memory", "Out of memory",
                                         "not enough memory"))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="proseg-pyro")
def cli() -> None:
    """ProSeg: probabilistic multi-rater segmentation (diversity and personalisation) in Pyro."""


def main() -> None:
    cli()
