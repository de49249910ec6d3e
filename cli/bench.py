"""``proseg-pyro bench``: speed and memory of the hot paths beside their baselines."""
from __future__ import annotations

import json
from pathlib import Path

import click

from proseg_pyro.benchmarks.size import BenchSize
from proseg_pyro.io_utils import atomic_write_text
from proseg_pyro.outputs import prepare_outputs

from .main import cli

_PAPER = BenchSize()


@cli.command()
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results here.")
@click.option("--repeats", type=click.IntRange(min=1), default=_PAPER.repeats, show_default=True,
              help="Interleaved repeats per case (medians are reported).")
@click.option("--image-size", type=click.IntRange(min=16), default=_PAPER.image_size, show_default=True,
              help="Height and width of the images measured.")
@click.option("--batch", type=click.IntRange(min=1), default=_PAPER.batch, show_default=True, help="Images per batch.")
@click.option("--raters", type=click.IntRange(min=1), default=_PAPER.raters, show_default=True, help="Rater slots.")
@click.option("--samples", type=click.IntRange(min=1), default=_PAPER.samples, show_default=True,
              help="Personalised samples per rater (and per image in the metrics case).")
@click.option("--prior-samples", type=click.IntRange(min=1), default=_PAPER.prior_samples, show_default=True,
              help="Prior samples per image.")
@click.option("--metric-images", type=click.IntRange(min=1), default=_PAPER.metric_images, show_default=True,
              help="Images the metrics are timed on.")
@click.option("--fit-images", type=click.IntRange(min=2), default=_PAPER.fit_images, show_default=True,
              help="Training set of the timed fit run.")
@click.option("--amp", is_flag=True, help="Also time the SVI step under bfloat16 autocast.")
@click.option("--large-set", type=click.IntRange(min=0), default=_PAPER.large_set, show_default=True,
              help="Also write a set of this many slices to a temporary folder and measure the peak memory of "
                   "building its slice cache and of training a few steps from it (0: not measured; 30000 needs "
                   "about 12 GB of temporary disk).")
@click.option("--force", is_flag=True, help="Overwrite an existing --json file.")
def bench(device, json_path, repeats, image_size, batch, raters, samples, prior_samples, metric_images, fit_images,
          amp, large_set, force):
    """Time the SVI step against a hand-written loss, vectorised sampling and batched metrics against
    loops, with peak memory; print medians, ratios and the targets they are held to."""
    from proseg_pyro.benchmarks.suite import report, run
    from proseg_pyro.device import resolve_device

    prepare_outputs([json_path], force)
    device = resolve_device(device)
    size = BenchSize(image_size=image_size, batch=batch, raters=raters, samples=samples, prior_samples=prior_samples,
                     metric_images=metric_images, metric_samples=samples, metric_chunk=min(_PAPER.metric_chunk,
                                                                                           metric_images),
                     loop_images=min(_PAPER.loop_images, metric_images), fit_images=fit_images, repeats=repeats,
                     amp=amp, large_set=large_set)
    result = run(size, device, progress=lambda name: click.echo(f"measuring {name} ...", err=True))
    click.echo(report(result))
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
