"""``proseg-pyro evaluate``: the paper's table (personalised and prior rows) for a checkpoint."""
from __future__ import annotations

from pathlib import Path

import click

from proseg_pyro.errors import ProSegError
from proseg_pyro.io_utils import atomic_write_text
from proseg_pyro.limits import require_prediction_memory
from proseg_pyro.outputs import prepare_outputs

from .common import ALPHA_STAR_OPTION, PROTOCOL, SEED, check_fits, data_options, load_source, paper_format, runs_of
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
@ALPHA_STAR_OPTION
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed of the sampling.")
@click.option("--force", is_flag=True, help="Overwrite an existing --json file (and the fold files).")
@PROTOCOL
def evaluate(checkpoint, source, split, samples, convention, per_slice, json_path, device, alpha_star, seed, force,
             protocol):
    """Sample CHECKPOINT on a split, every slice whole, and print GED, D_soft, D_max, D_match and
    per-rater Dice, means over case volumes (or slices with --per-slice). With --protocol paper on
    LIDC, CHECKPOINT is the folder of `train --protocol paper`: each fold's best.pt is scored on its
    test fold (CHECKPOINT/fold-k/test.json) and the folds' mean +- sd written to CHECKPOINT/test.json
    and test.md (or --json and its .md)."""
    from proseg_pyro.checkpoint import load_checkpoint
    from proseg_pyro.device import resolve_device
    from proseg_pyro.evaluate import evaluate as run_evaluation
    from proseg_pyro.inference import use_alpha_star

    source_format = paper_format(source, protocol)
    if source_format is not None:
        if per_slice or split != "test":
            raise click.UsageError("--protocol paper scores each case volume of the test split; drop --per-slice "
                                   "and --split")
        if source_format == "lidc":
            _evaluate_folds(checkpoint, source, samples, convention, json_path, resolve_device(device), seed, force,
                            alpha_star)
            return
    prepare_outputs([json_path], force)
    device = resolve_device(device)
    model, guide, config = load_checkpoint(checkpoint, device, method=None)
    use_alpha_star(model, guide, alpha_star, str(checkpoint))
    _check_samples(samples, config)
    slices = load_source(source, config, None if source_format else split, whole=True)
    if source_format is not None:
        slices = runs_of(slices, source, source_format)[0][1].split(split)
    check_fits(slices, config, source, checkpoint)
    _check_memory(samples, slices, config)
    result = run_evaluation(model, guide, slices, samples, convention, device, seed,
                            per="slice" if per_slice else "case", progress=True)
    click.echo(result.markdown())
    if json_path is not None:
        result.to_json(json_path)
        click.echo(f"wrote {json_path}")


def _check_samples(samples: int, config) -> None:
    if samples < config.num_raters:
        raise ProSegError(f"--samples {samples}: the prior row matches samples to the {config.num_raters} "
                          "raters, so it needs at least that many")


def _check_memory(samples: int, slices, config) -> None:
    require_prediction_memory(samples, len(slices), config.num_raters, config.num_classes,
                              slices.images.shape[-2] * slices.images.shape[-1], "--samples")


def _evaluate_folds(folder: Path, source, samples, convention, json_path, device, seed, force,
                    alpha_star: float | None) -> None:
    """Score each fold's checkpoint on its test fold; write each fold's JSON and the summary over folds."""
    from proseg_pyro.checkpoint import config_of, read_checkpoint
    from proseg_pyro.protocol import evaluate_folds, run_checkpoints, run_names, summarise_folds

    checkpoints = run_checkpoints(folder, "lidc")
    summary_json = json_path or folder / "test.json"
    fold_jsons = [folder / name / "test.json" for name in run_names("lidc")]
    prepare_outputs([summary_json, summary_json.with_suffix(".md"), *fold_jsons], force)
    config = config_of(read_checkpoint(checkpoints[0]), checkpoints[0])
    _check_samples(samples, config)
    slices = load_source(source, config, whole=True)
    _check_memory(samples, slices, config)
    runs = runs_of(slices, source, "lidc")
    check = lambda test, trained, checkpoint: check_fits(test, trained, source, checkpoint)  # noqa: E731
    results = evaluate_folds(runs, checkpoints, samples, convention, device, seed, check, alpha_star)
    for (name, result), fold_json in zip(results.items(), fold_jsons):
        click.echo(f"{name}:\n{result.markdown()}")
        result.to_json(fold_json)
    summary = summarise_folds(results)
    click.echo(summary.markdown())
    summary.to_json(summary_json)
    atomic_write_text(summary_json.with_suffix(".md"), summary.markdown())
    click.echo(f"wrote {folder}/fold-*/test.json, {summary_json} and {summary_json.with_suffix('.md')}")
