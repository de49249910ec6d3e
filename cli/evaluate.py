"""``proseg-pyro evaluate``: the paper's table (personalised and prior rows) for a checkpoint."""
from __future__ import annotations

from pathlib import Path

import click

from proseg_pyro.errors import ProSegError
from proseg_pyro.limits import require_prediction_memory
from proseg_pyro.outputs import prepare_outputs

from .common import SEED, check_fits, data_options, load_source
from .main import cli


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@data_options
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="Which split to score.")
@click.option("--samples", default=50, show_default=True, type=click.IntRange(min=1), help="Samples per image.")
@click.option("--convention", default="paper", show_default=True, type=click.Choice(["paper", "dpersona"]),
              help="How IoU, Dice and Dice max treat empty masks: the paper's, or the released D-Persona code's.")
@click.option("--per-slice", is_flag=True,
              help="Score each slice on its own  [default: each case volume, its slices together]")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Also write the results as JSON, with one row per case (per slice with --per-slice).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed of the sampling.")
@click.option("--force", is_flag=True, help="Overwrite an existing --json file.")
def evaluate(checkpoint, source, split, samples, convention, per_slice, json_path, device, seed, force):
    """Sample CHECKPOINT on a split, every slice whole, and print GED, D_soft, D_max, D_match and
    per-rater Dice, means over case volumes (or slices with --per-slice)."""
    from proseg_pyro.checkpoint import load_checkpoint
    from proseg_pyro.device import resolve_device
    from proseg_pyro.evaluate import evaluate as run_evaluation

    prepare_outputs([json_path], force)
    device = resolve_device(device)
    model, guide, config = load_checkpoint(checkpoint, device, method=None)
    if samples < config.num_raters:
        raise ProSegError(f"--samples {samples}: the prior row matches samples to the {config.num_raters} "
                          "raters, so it needs at least that many")
    slices = load_source(source, config, split, whole=True)
    check_fits(slices, config, source, checkpoint)
    require_prediction_memory(samples, len(slices), config.num_raters, config.num_classes,
                              slices.images.shape[-2] * slices.images.shape[-1], "--samples")
    result = run_evaluation(model, guide, slices, samples, convention, device, seed,
                            per="slice" if per_slice else "case", progress=True)
    click.echo(result.markdown())
    if json_path is not None:
        result.to_json(json_path)
        click.echo(f"wrote {json_path}")
