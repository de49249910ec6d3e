"""``proseg-pyro sample``: segment a whole scan in each expert's style, or draw diverse contours."""
from __future__ import annotations

from pathlib import Path

import click

from proseg_pyro.outputs import prepare_outputs

from .common import SEED, style_options
from .main import cli


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--image", "images", multiple=True, required=True, type=click.Path(path_type=Path),
              help="The scan: NIfTI, MHA, NRRD, ... or a DICOM series folder; repeat once per channel.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the volumes and summary.json.")
@style_options
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed of the sampling.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
def sample(checkpoint, images, out_dir, raters, prior, alpha_star, samples, device, seed, force):
    """Segment a scan slice by slice with CHECKPOINT, every pixel of it: per rater (or for the prior)
    the most likely mask, the mean probability and the entropy, on the input's exact grid, plus
    summary.json with the predicted volumes (mL) and their spread across samples. Slices are
    resampled to the training spacing the checkpoint records (none: the scan's own) and back."""
    from proseg_pyro.predict import SUMMARY, segment_to_folder

    from .predict import echo_volumes, load_request

    model, guide, request, device = load_request(checkpoint, raters, prior, alpha_star, samples, seed, device)
    prepare_outputs([out_dir / SUMMARY, *request.outputs(model.config, out_dir)], force)
    summary = segment_to_folder(model, guide, list(images), out_dir, request, device, progress=True,
                                warn=lambda note: click.echo(f"Warning: {images[0]}: {note}", err=True))
    size = summary["geometry"]["size"]
    click.echo(f"{images[0]}: {size[2] if len(size) == 3 else 1} slice(s) of {size[0]}x{size[1]}, spacing "
               f"{tuple(round(s, 4) for s in summary['geometry']['spacing'])} mm; {samples} samples on {device}")
    echo_volumes(summary.get("raters") or summary["prior"])
    click.echo(f"wrote {out_dir}")
