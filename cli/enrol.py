"""``proseg-pyro enrol``: teach a trained model a new rater's style from a few annotated images."""
from __future__ import annotations

from pathlib import Path

import click

from proseg_pyro.errors import ProSegError
from proseg_pyro.outputs import prepare_outputs

from .common import SEED, check_fits, data_options, load_source
from .main import cli


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@data_options
@click.option("--rater", "name", required=True, help="The new rater: a rater of the data the checkpoint does not know.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The new checkpoint (the old one plus the new rater).")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="Split whose annotations by the new rater are used.")
@click.option("--images", type=click.IntRange(min=1),
              help="Use only the first N images the rater annotated  [default: all]")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(min=1), help="Adam steps.")
@click.option("--lr", default=0.05, show_default=True, type=click.FloatRange(min=0, max=10, min_open=True),
              help="Adam learning rate.")
@click.option("--particles", default=8, show_default=True, type=click.IntRange(min=1),
              help="Monte Carlo samples of the ELBO per step.")
@click.option("--offset-scale", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Prior scale of the new rater's style offset; 0 fits its q(tau | r) alone.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Random seed of the fit.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file.")
def enrol(checkpoint, source, name, out, split, images, steps, lr, particles, offset_scale, device, seed, force):
    """Add rater NAME to CHECKPOINT from its annotations in the data: only the rater's q(tau | r) and
    style offset are fitted (all networks frozen; with per-rater z heads NAME starts from the head of
    the closest training style); afterwards `sample --rater NAME` segments in the new style."""
    import torch

    from proseg_pyro.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from proseg_pyro.data.patches import to_device
    from proseg_pyro.device import resolve_device
    from proseg_pyro.enrol import enrol as run_enrolment
    from proseg_pyro.enrol import style_dice

    prepare_outputs([out], force)
    device = resolve_device(device)
    model, guide, config = load_checkpoint(checkpoint, device)
    if name in config.slot_names():
        raise ProSegError(f"rater {name!r} is already known to {checkpoint}")
    slices = load_source(source, config, split)
    check_fits(slices, config, source, checkpoint, raters=False)
    if name not in slices.raters:
        raise ProSegError(f"{source['path']}: no rater {name!r} in the data (raters: {', '.join(slices.raters)})")
    slot = slices.raters.index(name)
    chosen = slices.select(slices.mask[:, slot])
    chosen = chosen.select(range(min(images or len(chosen), len(chosen))))
    if not len(chosen):
        raise ProSegError(f"{source['path']}: rater {name!r} annotated no image of the {split!r} split")
    x, y, _ = to_device(chosen.images, chosen.annotations[:, slot], chosen.mask, device)
    click.echo(f"enrolling {name!r} from {len(chosen)} image(s) of the {split!r} split ({steps} steps on {device})")
    result = run_enrolment(model, guide, x, y, name, steps, lr, particles, seed, offset_scale, progress=True)
    if result.template is not None:
        click.echo(f"started from the z head and tau of {config.slot_names()[result.template]!r}, the closest style")
    content = read_checkpoint(checkpoint, device)
    metrics = content.get("metrics") if isinstance(content.get("metrics"), dict) else {}
    enrolled = {**metrics.get("enrolled", {}), name: {
        "images": len(chosen), "steps": steps, "offset_scale": offset_scale, "final_loss": result.losses[-1],
        "started_from": None if result.template is None else config.slot_names()[result.template]}}
    save_checkpoint(out, method=content["method"], config=result.config.to_dict(), model=result.model.state_dict(),
                    guide=result.guide.state_dict(), step=content.get("step"),
                    metrics={**metrics, "enrolled": enrolled})
    names = result.config.slot_names()
    torch.manual_seed(seed)
    dice = style_dice(result.model, result.guide, x, y, list(range(len(names))))
    click.echo(f"Dice of {name}'s annotations with each style's prediction on these images:")
    click.echo("  " + "  ".join(f"{rater}={value:.3f}" for rater, value in zip(names, dice)))
    click.echo(f"wrote {out}")
