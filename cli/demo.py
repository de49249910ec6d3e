"""``proseg-pyro demo``: the whole job on the built-in set, end to end, next to the oracle."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from proseg_pyro.outputs import folder_lock, prepare_outputs, prepare_run

from .common import SEED
from .main import cli

if TYPE_CHECKING:
    from proseg_pyro.data.slices import SliceSet


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="Folder for the written set, the model and evaluation.json.")
@click.option("--images", default=240, show_default=True, type=click.IntRange(min=20),
              help="Images of the built-in set.")
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(min=16),
              help="Height and width of the built-in set's images.")
@click.option("--steps", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Optimiser steps of the training run.")
@click.option("--samples", default=50, show_default=True, type=click.IntRange(min=1), help="Samples per test image.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed of the set, training and sampling.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--real", type=click.Path(exists=True, path_type=Path), default=None,
              help="A real multi-rater set (any --data format) whose experts' distance matrix is printed beside "
                   "the built-in set's, read before anything is written.")
@click.option("--force", is_flag=True, help="Replace an earlier demo's outputs in OUT.")
def demo(out, images, image_size, steps, samples, seed, device, real, force):
    """Write and reload the built-in set, train ProSeg, and print the paper's table beside the oracle."""
    from proseg_pyro.data.synthetic import DEFAULT_STYLES
    from proseg_pyro.device import resolve_device

    if samples < len(DEFAULT_STYLES):  # Dice match pairs every rater's annotation with its own sample
        raise click.BadParameter(f"needs at least one sample per rater of the built-in set ({len(DEFAULT_STYLES)}), "
                                 f"got {samples}", param_hint="--samples")
    device = resolve_device(device)
    real_set = _read_real_set(real) if real is not None else None
    prepare_outputs([out / "data" / "manifest.json", out / "evaluation.json"], force)
    with folder_lock(out / "model"):
        prepare_run(out / "model", force, resume=False)
        _demo(out, images, image_size, steps, samples, seed, device, real_set)


def _read_real_set(path: Path) -> SliceSet:
    """``path``'s slices, each with its whole field of view (nothing cropped away), raters in their stored
    order (bad input raises DataError)."""
    from proseg_pyro.data import load_dataset

    return load_dataset(path, rank_raters="keep", whole=True)


def _demo(out: Path, images: int, image_size: int, steps: int, samples: int, seed: int, device,
          real_set: SliceSet | None) -> None:
    """The demo's steps, once its outputs are settled."""
    import numpy as np

    from proseg_pyro import metrics
    from proseg_pyro.config import ProSegConfig
    from proseg_pyro.demo import format_matrix, train_and_score, write_builtin_set

    slices, truth, manifest = write_builtin_set(images, image_size, seed, out / "data")
    click.echo(f"built-in set: {len(slices)} slices of {image_size}x{image_size}, raters {slices.raters}, "
               f"written to {manifest} and read back identically")
    shown_sets = [("built-in set", slices)] + ([(real_set.name or "real set", real_set)] if real_set is not None else [])
    for name, shown in shown_sets:
        click.echo(f"\n{name} ({len(shown)} slices, {len(shown.raters)} raters): expert distance matrix "
                   "(1 - IoU, mean over images)")
        click.echo(format_matrix(metrics.expert_distance_matrix(shown.annotations, shown.mask), shown.raters))

    click.echo(f"\ntraining ProSeg for up to {steps} steps on {device} ...")
    config = ProSegConfig(image_size=image_size, steps=steps, seed=seed).fitted_to(slices)
    result, evaluation = train_and_score(slices, truth, config, out / "model", samples, device)
    click.echo(f"best step {result.best_step}, {sum(row['seconds'] for row in result.history):.0f} s")
    evaluation.to_json(out / "evaluation.json")
    click.echo(f"\ntest split ({evaluation.settings['images']} images, {evaluation.settings['samples']} samples):")
    click.echo(evaluation.markdown())
    for name, matrix in evaluation.cross_rater_dice.items():
        click.echo(f"\n{name}: Dice of rater i's annotations (rows) with predictions in rater j's style (columns)")
        click.echo(format_matrix(np.array(matrix), evaluation.raters))
