"""``proseg-pyro synth``: write the built-in synthetic set as NIfTI files and a manifest."""
from __future__ import annotations

from pathlib import Path

import click

from proseg_pyro.config import ProSegConfig
from proseg_pyro.outputs import prepare_outputs

from .common import SEED
from .main import cli


@cli.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the NIfTI files and manifest.json.")
@click.option("--num-images", default=240, show_default=True, type=click.IntRange(min=1),
              help="Number of images.")
@click.option("--image-size", default=ProSegConfig.image_size, show_default=True, type=click.IntRange(min=16),
              help="Height and width in pixels.")
@click.option("--seed", default=0, show_default=True, type=SEED,
              help="Random seed (same seed, same set).")
@click.option("--force", is_flag=True, help="Replace a dataset already in OUT.")
def synth(out_dir: Path, num_images: int, image_size: int, seed: int, force: bool) -> None:
    """Write the built-in synthetic multi-rater set as NIfTI files plus manifest.json."""
    from proseg_pyro.data.export import write_manifest_dataset
    from proseg_pyro.data.synthetic import make_synthetic

    prepare_outputs([out_dir / "manifest.json"], force)
    slices, _ = make_synthetic(num_images, image_size, seed)
    manifest = write_manifest_dataset(slices, out_dir)
    click.echo(f"Wrote {len(slices)} images x {len(slices.raters)} raters ({', '.join(slices.raters)}): {manifest}")
