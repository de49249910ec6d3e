"""``proseg-pyro train``: fit ProSeg by SVI on a dataset (the built-in set when none is given)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from proseg_pyro.names import TRAINABLE
from proseg_pyro.outputs import folder_lock, prepare_run

from .common import (SEED, budget_options, data_options, load_training_source, nonempty_split, read_config,
                     with_training_spacing)
from .main import cli

if TYPE_CHECKING:
    import torch

    from proseg_pyro.data.slices import SliceSet
    from proseg_pyro.train import TrainResult


def config_for_data(config, slices: SliceSet):
    """The config with the dataset's raters, channels and classes filled in."""
    return config.replace(num_raters=len(slices.raters), rater_names=list(slices.raters),
                          in_channels=slices.images.shape[1], num_classes=len(slices.classes))


def fit_rank(config, train_set: SliceSet, val_set: SliceSet, out: Path, device: torch.device,
             resume: bool) -> TrainResult:
    """One rank of a data-parallel run: join the process group, train, leave."""
    from proseg_pyro import distributed
    from proseg_pyro.train import fit

    rank = distributed.setup(device)
    try:
        return fit(config, train_set, val_set, out, device=distributed.rank_device(device), resume=resume,
                   progress=rank.is_main)
    finally:
        distributed.teardown()


def _best(out: Path) -> TrainResult:
    """The best validation of the run in ``out``, read from its last checkpoint."""
    from proseg_pyro.checkpoint import read_checkpoint
    from proseg_pyro.train import TrainResult

    state = read_checkpoint(out / "last.pt")
    return TrainResult(out, state["history"], state["best_step"], state["best_score"])


@cli.command()
@data_options
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="JSON file of hyperparameters; keys it leaves out come from --preset.")
@click.option("--preset", "preset_name", type=click.Choice(["default", "paper"]), default="default", show_default=True,
              help="'paper': the published settings; 'default': what learned rater styles on a CPU budget.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/train"), show_default=True,
              help="Folder for the checkpoints, config.json and log.csv.")
@budget_options
@click.option("--lr", type=float, help="Adam learning rate  [default: the config's]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", type=SEED, help="Random seed  [default: the config's]")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt (which must exist).")
@click.option("--force", is_flag=True, help="Replace a run already in OUT.")
@click.option("--method", type=click.Choice(TRAINABLE),
              help="A compared method or ablation instead of ProSeg (majority_vote and staple need no "
                   "training: `compare` evaluates them)  [default: the config's, proseg]")
@click.option("--ddp", is_flag=True,
              help="Data-parallel training (DistributedDataParallel), the result of one process. Under torchrun "
                   "each process is a rank; otherwise --nproc local processes are started.")
@click.option("--nproc", type=click.IntRange(min=1),
              help="Processes for --ddp outside torchrun (default: the GPUs with --device cuda, else 2).")
def train(source, config_path, preset_name, out, steps, epochs, batch_size, lr, image_size, device, seed, resume,
          force, method, ddp, nproc):
    """Train ProSeg (or --method); writes OUT/best.pt, OUT/last.pt, OUT/config.json and OUT/log.csv
    (an earlier run in OUT is continued with --resume or replaced with --force, never silently)."""
    from proseg_pyro import distributed
    from proseg_pyro.device import resolve_device

    device = resolve_device(device)
    under_torchrun, main_rank = distributed.launched_by_torchrun(), distributed.environment_rank() == 0
    config = read_config(config_path, preset_name, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr,
                         image_size=image_size, seed=seed, method=method)
    with contextlib.ExitStack() as stack:
        if main_rank:  # one writer per run folder; the other ranks of a process group write nothing
            stack.enter_context(folder_lock(out))
            prepare_run(out, force, resume)
        _train(source, config, out, device, resume, ddp, nproc, under_torchrun, main_rank)


def _train(source, config, out, device, resume, ddp, nproc, under_torchrun, main_rank) -> None:
    """Load the data (at the training spacing) and train (in this process, as a torchrun rank, or on
    spawned ranks)."""
    import torch

    from proseg_pyro import distributed
    from proseg_pyro.train import fit

    config = with_training_spacing(source, config)
    slices = load_training_source(source, config)
    config = config_for_data(config, slices)
    train_set, val_set = nonempty_split(slices, "train", source), slices.split("val")
    if main_rank:
        click.echo(f"training on {len(train_set)} slices ({len(val_set)} validation), {config.num_raters} raters, "
                   f"device {device}; in-plane spacing "
                   f"{'of each scan (none recorded)' if config.spacing is None else f'{tuple(config.spacing)} mm'}")
    if under_torchrun:
        result = fit_rank(config, train_set, val_set, out, device, resume)
    elif ddp:
        processes = nproc or (torch.cuda.device_count() if device.type == "cuda" else 2)
        distributed.spawn(fit_rank, processes, config, train_set, val_set, out, device, resume)
        result = _best(out)
    else:
        result = fit(config, train_set, val_set, out, device=device, resume=resume)
    if main_rank:
        click.echo(f"best step {result.best_step} (validation Dice {result.best_score:.3f}); wrote {out}/best.pt")
        if result.predicts_nothing:
            click.echo("warning: the best model predicts no foreground on any validation image; train longer, "
                       "raise dice_weight or check the labels", err=True)
