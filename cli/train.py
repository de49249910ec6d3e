"""``proseg-pyro train``: fit ProSeg by SVI on a dataset (the built-in set when none is given)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from proseg_pyro.names import METHOD_NAMES
from proseg_pyro.outputs import folder_lock, prepare_run

from .common import (PRESET, PROTOCOL, SEED, budget_options, data_options, load_training_source, nonempty_split,
                     paper_format, read_config, runs_of, with_training_spacing)
from .main import cli

if TYPE_CHECKING:
    import torch

    from proseg_pyro.data.slices import SliceSet
    from proseg_pyro.train import TrainResult


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
@PRESET
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/train"), show_default=True,
              help="Folder for the checkpoints, config.json and log.csv.")
@budget_options
@click.option("--lr", type=float, help="Adam learning rate  [default: the config's]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", type=SEED, help="Random seed  [default: the config's]")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt (which must exist).")
@click.option("--force", is_flag=True, help="Replace a run already in OUT.")
@click.option("--method", type=click.Choice(METHOD_NAMES),
              help="A compared method or ablation instead of ProSeg (majority_vote and staple need no "
                   "training: `compare` evaluates them)  [default: the config's, proseg]")
@click.option("--ddp", is_flag=True,
              help="Data-parallel training (DistributedDataParallel), the result of one process. Under torchrun "
                   "each process is a rank; otherwise --nproc local processes are started.")
@click.option("--nproc", type=click.IntRange(min=1),
              help="Processes for --ddp outside torchrun (default: the GPUs with --device cuda, else 2).")
@PROTOCOL
def train(source, config_path, preset_name, out, steps, epochs, batch_size, lr, image_size, device, seed, resume,
          force, method, ddp, nproc, protocol):
    """Train ProSeg (or --method); writes OUT/best.pt, OUT/last.pt, OUT/config.json and OUT/log.csv
    (an earlier run in OUT is continued with --resume or replaced with --force, never silently);
    with --protocol paper on LIDC one run per test fold in OUT/fold-0 .. OUT/fold-3."""
    from proseg_pyro import distributed
    from proseg_pyro.device import resolve_device
    from proseg_pyro.protocol import run_names

    device = resolve_device(device)
    under_torchrun, main_rank = distributed.launched_by_torchrun(), distributed.environment_rank() == 0
    config = read_config(config_path, preset_name, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr,
                         image_size=image_size, seed=seed, method=method)
    source_format = paper_format(source, protocol)
    folders = [out / name for name in run_names(source_format)] if source_format else [out]
    # with several runs, --resume continues those begun and starts the others
    resumes = [resume and (len(folders) == 1 or (folder / "last.pt").is_file()) for folder in folders]
    with contextlib.ExitStack() as stack:
        if main_rank:  # one writer per run folder; the other ranks of a process group write nothing
            stack.enter_context(folder_lock(out))
            if resume and not any(resumes):
                prepare_run(folders[0], force, resume)  # nothing begun: refused
            for folder, resumed in zip(folders, resumes):
                prepare_run(folder, force, resumed)
        _train(source, config, out, device, resumes, ddp, nproc, under_torchrun, main_rank, source_format)


def _train(source, config, out, device, resumes, ddp, nproc, under_torchrun, main_rank, source_format) -> None:
    """Load the data (at the training spacing) and train each run (in this process, as a torchrun
    rank, or on spawned ranks)."""
    config = with_training_spacing(source, config)
    slices = load_training_source(source, config)
    config = config.fitted_to(slices)
    for (name, run), resume in zip(runs_of(slices, source, source_format), resumes):
        _train_run(source, config, run, out / name if name else out, device, resume, ddp, nproc, under_torchrun,
                   main_rank, f"{name}: " if name else "")


def _train_run(source, config, slices, out, device, resume, ddp, nproc, under_torchrun, main_rank, prefix) -> None:
    """Train one run on ``slices``' train split, validating on its val split."""
    import torch

    from proseg_pyro import distributed
    from proseg_pyro.train import fit

    train_set, val_set = nonempty_split(slices, "train", source), slices.split("val")
    if main_rank:
        click.echo(f"{prefix}training on {len(train_set)} slices ({len(val_set)} validation), {config.num_raters} "
                   f"raters, device {device}; in-plane spacing "
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
        click.echo(f"{prefix}best step {result.best_step} (validation Dice {result.best_score:.3f}); "
                   f"wrote {out}/best.pt")
        if result.predicts_nothing:
            click.echo(f"{prefix}warning: the best model predicts no foreground on any validation image; train longer, "
                       "raise dice_weight or check the labels", err=True)
