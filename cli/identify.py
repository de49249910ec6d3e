"""``proseg-pyro identify``: which known rater most likely drew a given annotation of a scan."""
from __future__ import annotations

import json
from pathlib import Path

import click

from proseg_pyro.io_utils import atomic_write_text
from proseg_pyro.outputs import prepare_outputs

from .common import SEED
from .main import cli


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--image", "images", multiple=True, required=True, type=click.Path(path_type=Path),
              help="The scan (or 2D image); repeat once per channel.")
@click.option("--annotation", required=True, type=click.Path(path_type=Path), help="Label image on the scan's grid.")
@click.option("--samples", default=64, show_default=True, type=click.IntRange(min=1),
              help="Monte Carlo samples of (tau, z) per rater and slice.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table as JSON.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed of the Monte Carlo samples.")
@click.option("--force", is_flag=True, help="Overwrite an existing --json file.")
def identify(checkpoint, images, annotation, samples, json_path, device, seed, force):
    """Posterior over the raters CHECKPOINT knows of having drawn ANNOTATION (uniform prior; the
    slices of a volume count together)."""
    import numpy as np
    import pyro
    import torch

    from proseg_pyro.checkpoint import load_checkpoint
    from proseg_pyro.device import resolve_device
    from proseg_pyro.identify import log_evidence, posterior
    from proseg_pyro.volume import prepare_scan, read_annotation, read_scan

    prepare_outputs([json_path], force)
    device = resolve_device(device)
    model, guide, config = load_checkpoint(checkpoint, device)
    scan = read_scan(images, config.in_channels)
    prepared = prepare_scan(scan, config, read_annotation(annotation, scan, config.num_classes))
    x = torch.as_tensor(prepared.images, device=device)
    y = torch.as_tensor(prepared.labels[:, 0].astype(np.int64), device=device)
    names = config.slot_names()
    pyro.set_rng_seed(seed)
    evidence = torch.cat([log_evidence(model, guide, x[start:start + 16], y[start:start + 16], list(range(len(names))),
                                       samples) for start in range(0, len(x), 16)])
    probabilities = posterior(evidence, joint=True)
    rows = [{"rater": name, "log_evidence": float(value), "posterior": float(p)}
            for name, value, p in zip(names, evidence.sum(0), probabilities)]
    width = max(5, *(len(name) for name in names))
    click.echo(f"{'rater':<{width}}  {'log p(y | x, r)':>16}  {'p(r | x, y)':>11}")
    for row in sorted(rows, key=lambda row: -row["posterior"]):
        click.echo(f"{row['rater']:<{width}}  {row['log_evidence']:16.2f}  {row['posterior']:11.4f}")
    if json_path is not None:
        atomic_write_text(json_path, json.dumps({"checkpoint": str(checkpoint), "image": [str(p) for p in scan.paths],
                                                 "annotation": str(annotation), "samples": samples, "seed": seed,
                                                 "slices": len(x), "raters": rows}, indent=2) + "\n")
        click.echo(f"wrote {json_path}")
