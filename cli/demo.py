"""``proseg-pyro demo``: the whole job on the built-in set, end to end, next to the oracle."""
from __future__ import annotations

from pathlib import Path

import click

from proseg_pyro.outputs import folder_lock, prepare_outputs, prepare_run

from .common import SEED
from .main import cli

QUBIQ = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "qubiq-brain-growth" / "brain_growth_alpha.zip"


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
@click.option("--force", is_flag=True, help="Replace an earlier demo's outputs in OUT.")
def demo(out, images, image_size, steps, samples, seed, device, force):
    """Write and reload the built-in set, train ProSeg, and print the paper's table beside the oracle."""
    from proseg_pyro.device import resolve_device

    device = resolve_device(device)
    prepare_outputs([out / "data" / "manifest.json", out / "evaluation.json"], force)
    with folder_lock(out / "model"):
        prepare_run(out / "model", force, resume=False)
        _demo(out, images, image_size, steps, samples, seed, device)


def _demo(out: Path, images: int, image_size: int, steps: int, samples: int, seed: int, device) -> None:
    """The demo's steps, once its outputs are settled."""
    import numpy as np

    from proseg_pyro import metrics
    from proseg_pyro.config import ProSegConfig
    from proseg_pyro.data import load_dataset
    from proseg_pyro.demo import format_matrix, train_and_score, write_builtin_set

    slices, truth, manifest = write_builtin_set(images, image_size, seed, out / "data")
    click.echo(f"built-in set: {len(slices)} slices of {image_size}x{image_size}, raters {slices.raters}, "
               f"written to {manifest} and read back identically")
    click.echo("\nexpert distance matrix (1 - IoU, mean over images):")
    click.echo(format_matrix(metrics.expert_distance_matrix(slices.annotations, slices.mask), slices.raters))
    if QUBIQ.exists():
        qubiq = load_dataset(QUBIQ, rank_raters="keep", config=ProSegConfig(image_size=128))
        click.echo(f"\nQUBIQ brain growth ({len(qubiq)} slices, {len(qubiq.raters)} real raters), expert distances:")
        click.echo(format_matrix(metrics.expert_distance_matrix(qubiq.annotations, qubiq.mask), qubiq.raters))

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
