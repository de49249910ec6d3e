"""``proseg-pyro figures``: the paper's sample grids, distance distributions and tau embedding as PNGs."""
from __future__ import annotations

from pathlib import Path

import click

from proseg_pyro.limits import require_prediction_memory
from proseg_pyro.names import EMBEDDINGS
from proseg_pyro.outputs import prepare_outputs

from .common import SEED, check_fits, data_options, load_source
from .main import cli


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@data_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the PNGs.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="Which split's images to show.")
@click.option("--images", "num_images", default=4, show_default=True, type=click.IntRange(min=1),
              help="Rows of the sample grid (the images the experts disagree on most).")
@click.option("--samples", default=16, show_default=True, type=click.IntRange(min=2),
              help="Model samples per image (predictions and distances).")
@click.option("--grid-samples", default=4, show_default=True, type=click.IntRange(min=0),
              help="Prior samples shown per row of the grid.")
@click.option("--embedding", default="pca", show_default=True, type=click.Choice(EMBEDDINGS),
              help="2D embedding of the tau samples.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed of the sampling.")
@click.option("--force", is_flag=True, help="Overwrite existing PNGs.")
def figures(checkpoint, source, out_dir, split, num_images, samples, grid_samples, embedding, device, seed, force):
    """Write samples.png (image, annotations, styles, prior samples), distances.png (distance between
    two random experts, annotations vs model), styles.png (the experts' distance matrix beside that of
    the predictions in their styles) and tau_<embedding>.png (q(tau | r) per rater) for a split."""
    from proseg_pyro.checkpoint import load_checkpoint
    from proseg_pyro.device import resolve_device
    from proseg_pyro.figures import figure_paths, make_figures

    prepare_outputs(figure_paths(out_dir, embedding).values(), force)
    device = resolve_device(device)
    model, guide, config = load_checkpoint(checkpoint, device)
    slices = load_source(source, config, split)
    check_fits(slices, config, source, checkpoint)
    require_prediction_memory(samples, len(slices), config.num_raters, config.num_classes,
                              config.image_size ** 2, "--samples")
    paths = make_figures(model, guide, slices, out_dir, num_images, samples, min(grid_samples, samples),
                         embedding=embedding, device=device, seed=seed, progress=True)
    for name, path in paths.items():
        click.echo(f"wrote {path}")
