"""``proseg-pyro compare``: train (or reuse) every compared method and write the paper's comparison tables."""
from __future__ import annotations

from pathlib import Path

import click

from proseg_pyro.io_utils import atomic_write_text
from proseg_pyro.names import CONSENSUS_NAMES, METHOD_NAMES
from proseg_pyro.outputs import folder_lock, prepare_outputs

from .common import (PRESET, PROTOCOL, SEED, budget_options, data_options, load_training_source, paper_format,
                     read_config, runs_of)
from .main import cli


def _numbers(text: str | None, kind: type, option: str) -> list | None:
    """A comma-separated list of positive numbers (seeds may be 0), or None when not given."""
    if text is None:
        return None
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint=option) from None
    if not values or any(not value >= 0 or value != value for value in values) or (kind is float and 0 in values):
        raise click.BadParameter(f"{text!r}: give non-negative seeds or positive rates", param_hint=option)
    return values


def _method_rates(ctx, param, value: str | None) -> dict[str, float]:
    """``"dpersona=3e-3,unet_pooled=3e-3"`` -> ``{"dpersona": 0.003, "unet_pooled": 0.003}``."""
    from proseg_pyro.compare import parse_method_lr
    from proseg_pyro.errors import ConfigError

    try:
        return parse_method_lr(value or "")
    except ConfigError as err:
        raise click.BadParameter(str(err), param_hint="--method-lr") from None


TABLES = ("comparison.md", "comparison.json")


@cli.command()
@data_options
@click.option("--methods", default="all", show_default=True,
              help=f"'all' or a comma-separated list of: {', '.join(METHOD_NAMES + CONSENSUS_NAMES)}.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="JSON file of hyperparameters shared by every method; keys it leaves out come from --preset.")
@PRESET
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/compare"), show_default=True,
              help="Each method trains into OUT/METHOD/; the tables go to OUT/comparison.md and .json.")
@budget_options
@click.option("--images", type=click.IntRange(min=20), help="Built-in set only: number of images [default: 240].")
@click.option("--samples", default=50, show_default=True, type=click.IntRange(min=1), help="Samples per image.")
@click.option("--convention", default="paper", show_default=True, type=click.Choice(["paper", "dpersona"]),
              help="How IoU, Dice and Dice max treat empty masks: the paper's, or the released D-Persona code's.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed of training and sampling.")
@click.option("--seeds", callback=lambda ctx, param, value: _numbers(value, int, "--seeds"),
              help="Comma-separated training seeds per method, e.g. 0,1,2 (mean +- sd)  [default: --seed]")
@click.option("--lr-grid", callback=lambda ctx, param, value: _numbers(value, float, "--lr-grid"),
              help="Comma-separated learning rates, e.g. 3e-4,1e-3,3e-3: each method takes the one with the best "
                   "validation Dice  [default: the config's lr]")
@click.option("--method-lr", callback=_method_rates, metavar="METHOD=RATE,...",
              help="Comma-separated rates per method, e.g. dpersona=3e-3,unet_pooled=3e-3: those methods run at "
                   "their rate instead of the grid's pick (a pick carried over from a grid at a smaller budget); "
                   "recorded in the tables.")
@click.option("--force", is_flag=True, help="Train every method afresh instead of continuing or reusing OUT/METHOD/, "
                                           "and replace existing tables.")
@PROTOCOL
def compare(source, methods, config_path, preset_name, out, steps, epochs, image_size, batch_size, images, samples, convention,
            device, seed, seeds, lr_grid, method_lr, force, protocol):
    """Train every method on the train split, score all on the test split, and write the comparison tables
    (with --protocol paper on LIDC: one comparison per test fold in OUT/fold-k/, their mean +- sd in OUT/)."""
    from proseg_pyro.compare import check_method_lr, parse_methods
    from proseg_pyro.device import resolve_device
    from proseg_pyro.protocol import run_names

    names = parse_methods(methods)
    check_method_lr(method_lr, names)
    device = resolve_device(device)
    source_format = paper_format(source, protocol)
    folders = [out / name for name in run_names(source_format)] if source_format else [out]
    prepare_outputs([folder / table for folder in {out, *folders} for table in TABLES], force)
    with folder_lock(out):
        config = read_config(config_path, preset_name, steps=steps, epochs=epochs, image_size=image_size,
                             batch_size=batch_size, seed=seed)
        _compare(source, names, config, out, images, samples, convention, device, force, seeds, lr_grid,
                 method_lr, source_format)


def _write(comparison, folder: Path) -> None:
    comparison.to_json(folder / TABLES[1])
    atomic_write_text(folder / TABLES[0], comparison.markdown())


def _compare(source, names, config, out, images, samples, convention, device, force, seeds, lr_grid,
             method_lr, source_format) -> None:
    """Load the data, train or reuse each method's run (per fold of the paper's protocol), and write the tables."""
    from proseg_pyro.compare import builtin_set, compare as run_compare
    from proseg_pyro.comparison import over_folds

    if source["path"] == "synthetic":
        slices, truth = builtin_set(images or 240, config)
    elif images is not None:
        raise click.UsageError("--images applies to the built-in set only")
    else:
        slices, truth = load_training_source(source, config), None
    config = config.fitted_to(slices)
    click.echo(f"comparing {len(names)} methods on {slices.name or source['path']} ({len(slices)} slices), "
               f"device {device}")
    results = {}
    for name, run in runs_of(slices, source, source_format):
        if name:
            click.echo(f"{name}:")
        results[name] = run_compare(run, config, names, out / name if name else out, samples, device, convention,
                                    truth, force, log=click.echo, seeds=seeds, lr_grid=lr_grid,
                                    method_lr=method_lr)
        if name:
            _write(results[name], out / name)
    result = over_folds(results) if len(results) > 1 else results[""]
    _write(result, out)
    click.echo(result.markdown())
    click.echo(f"wrote {out}/comparison.md and {out}/comparison.json"
               + (f" (each fold's in {out}/fold-k/)" if len(results) > 1 else ""))
