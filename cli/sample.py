"""``proseg-pyro sample``: segment a whole scan in each expert's style, or draw diverse contours."""
from __future__ import annotations

import json
from pathlib import Path

import click
import pyro

from proseg_pyro.checkpoint import load_checkpoint
from proseg_pyro.data.export import _safe
from proseg_pyro.device import resolve_device
from proseg_pyro.enrol import rater_index, rater_names
from proseg_pyro.io_utils import atomic_write_text
from proseg_pyro.limits import require_sampling_memory
from proseg_pyro.outputs import prepare_outputs
from proseg_pyro.volume import read_scan, segment_scan, style_files, write_style

from .common import SEED
from .main import cli


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--image", "images", multiple=True, required=True, type=click.Path(path_type=Path),
              help="The scan: NIfTI, MHA, NRRD, ... or a DICOM series folder; repeat once per channel.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the volumes and summary.json.")
@click.option("--rater", "raters", multiple=True,
              help="Segment in this rater's style (repeatable; default: every rater the checkpoint knows).")
@click.option("--prior", is_flag=True, help="Draw diverse samples from the prior instead, and write every sample.")
@click.option("--samples", default=50, show_default=True, type=click.IntRange(min=1), help="Samples per slice.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
def sample(checkpoint, images, out_dir, raters, prior, samples, device, seed, force):
    """Segment a scan slice by slice with CHECKPOINT: per rater (or for the prior) the most likely
    mask, the mean probability and the entropy, on the input's exact grid, plus summary.json with
    the predicted volumes (mL) and their spread across samples."""
    if prior and raters:
        raise click.UsageError("give either --rater or --prior, not both")
    device = resolve_device(device)
    model, guide, config = load_checkpoint(checkpoint, device)
    slots = None if prior else [rater_index(config, name) for name in dict.fromkeys(raters or rater_names(config))]
    stems = ["prior"] if prior else [f"rater-{_safe(rater_names(config)[slot])}" for slot in slots]
    scan = read_scan(images, config.in_channels)
    require_sampling_memory(samples, len(stems), scan.images.shape, config.num_classes, prior, "--samples")
    files = [style_files(out_dir, stem, samples if prior else None) for stem in stems]
    summary_path = out_dir / "summary.json"
    prepare_outputs([summary_path, *(path for style in files for path in style.values())], force)
    click.echo(f"{scan.paths[0]}: {len(scan.images)} slice(s) of {scan.images.shape[-1]}x{scan.images.shape[-2]}, "
               f"spacing {tuple(round(s, 4) for s in scan.geometry.spacing)} mm; {samples} samples on {device}")
    pyro.set_rng_seed(seed)
    results = segment_scan(model, guide, scan, slots, samples, device, progress=True)
    styles = {maps.name: write_style(maps, scan, style) for maps, style in zip(results, files)}
    atomic_write_text(summary_path, json.dumps({
        "checkpoint": str(checkpoint), "image": [str(path) for path in scan.paths], "samples": samples,
        "seed": seed, "geometry": {"size": scan.geometry.size, "spacing": scan.geometry.spacing,
                                   "origin": scan.geometry.origin, "direction": scan.geometry.direction},
        "voxel_ml": scan.voxel_ml, "prior" if prior else "raters": styles}, indent=2) + "\n")
    width = max(len(name) for name in styles)
    click.echo(f"{'style':<{width}}  volume mL  samples mL: mean +- std [p5, p95]")
    for name, row in styles.items():
        spread = row["sample_volume_ml"]
        click.echo(f"{name:<{width}}  {row['volume_ml']:9.3f}  {spread['mean']:.3f} +- {spread['std']:.3f} "
                   f"[{spread['p05']:.3f}, {spread['p95']:.3f}]")
    click.echo(f"wrote {out_dir}")
