"""``proseg-pyro predict``: segment a folder of scans, one result folder per case and a summary table."""
from __future__ import annotations

from pathlib import Path

import click

from .common import SEED, style_options
from .main import cli


def load_request(checkpoint: Path, raters: tuple[str, ...], prior: bool, alpha_star: float | None,
                 samples: int, seed: int, device: str):
    """The model, guide, :class:`~proseg_pyro.predict.Request` and device of the style options."""
    from proseg_pyro.checkpoint import load_checkpoint
    from proseg_pyro.device import resolve_device
    from proseg_pyro.inference import use_alpha_star
    from proseg_pyro.predict import Request

    if prior and raters:
        raise click.UsageError("give either --rater or --prior, not both")
    if alpha_star is not None and not prior:
        raise click.UsageError("--alpha-star sets the prior draws: add --prior")
    device = resolve_device(device)
    model, guide, config = load_checkpoint(checkpoint, device)
    use_alpha_star(model, guide, alpha_star, str(checkpoint))
    slots = None if prior else [config.slot_of(name) for name in dict.fromkeys(raters or config.slot_names())]
    return model, guide, Request(slots, samples, seed, str(checkpoint)), device


def echo_volumes(styles: dict) -> None:
    """Print each style's volume and the spread of its samples' volumes."""
    width = max(5, *(len(name) for name in styles))
    click.echo(f"{'style':<{width}}  volume mL  samples mL: mean +- std [p5, p95]")
    for name, row in styles.items():
        spread = row["sample_volume_ml"]
        click.echo(f"{name:<{width}}  {row['volume_ml']:9.3f}  {spread['mean']:.3f} +- {spread['std']:.3f} "
                   f"[{spread['p05']:.3f}, {spread['p95']:.3f}]")


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-i", "--input", "in_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of scans: CASE_0000.nii.gz, CASE_0001.nii.gz ... per channel (nnU-Net naming), or "
                   "one file per case (NIfTI, MHA, NRRD, ...).")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for one result folder per case and summary.csv.")
@style_options
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed, set before each case.")
@click.option("--force", is_flag=True, help="Redo cases that already have a result (default: skip them).")
def predict(checkpoint, in_dir, out_dir, raters, prior, alpha_star, samples, device, seed, force):
    """Segment every scan in INPUT with CHECKPOINT: OUTPUT/CASE/ holds each style's mask,
    probability and entropy (and with --prior every sample) on the scan's exact grid and
    summary.json; OUTPUT/summary.csv has every case's volumes (mL) and their spread over samples.
    Cases already done are skipped, so an interrupted run continues where it stopped."""
    from proseg_pyro.predict import predict_folder

    model, guide, request, device = load_request(checkpoint, raters, prior, alpha_star, samples, seed, device)
    result = predict_folder(model, guide, in_dir, out_dir, request, device, force,
                            warn=lambda line: click.echo(f"Warning: {line}", err=True))
    click.echo(f"{len(result.summaries)} case(s): {len(result.segmented)} segmented, "
               f"{len(result.skipped)} already done; summary in {result.table}")
