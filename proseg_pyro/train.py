"""Stochastic variational inference for ProSeg (and every registered method): the ELBO module, a
torch optimiser and a plain loop.

Validation ELBO each epoch, early stopping, ``best.pt``/``last.pt`` checkpoints (with optimiser and
RNG states, so a resumed run continues exactly), a CSV log, and a clear stop on a non-finite loss.
The ELBO's samples of each image come from a seed of its own (run seed, epoch, position in the
epoch), so in a process group (``torchrun``, see :mod:`proseg_pyro.distributed`), where the ELBO
module runs under ``DistributedDataParallel`` on each rank's shard of every batch, a run ends
where one process ends.
"""
from __future__ import annotations

import csv
import functools
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .checkpoint import config_of, read_checkpoint, save_checkpoint
from .config import ProSegConfig
from .data.slices import SliceSet
from .data.transforms import JointAugment
from .distributed import ImageNoise, Rank, current
from .errors import CheckpointError, ProSegError
from .io_utils import atomic_write_text
from .methods import get_method


class TrainingError(ProSegError):
    """Training cannot go on (for example the loss became NaN); the last good checkpoint is kept."""


# Noise streams of ImageNoise: validation, and training epoch e as e + 1.
VALIDATION_STREAM = 0
# Config values a resumed run may change: they decide how long it trains, not what a step computes.
RESUMABLE_KEYS = ("epochs", "patience", "num_workers")
TRAINING_STATE = ("optimizer", "rng", "epoch", "history", "best_epoch", "best_val_loss", "stale_epochs")


@dataclass
class TrainResult:
    """What a run produced: per-epoch ``history`` rows and the best validation epoch."""

    out_dir: Path
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf


def build(config: ProSegConfig, device: torch.device | str = "cpu") -> tuple[PyroModule, PyroModule, nn.Module]:
    """Model, guide and the ELBO loss module over both (its parameters are all trainable weights)."""
    pyro.set_rng_seed(config.seed)
    model, guide = get_method(config.method).build(config)
    model, guide = model.to(device), guide.to(device)
    elbo = pyro.infer.Trace_ELBO(max_plate_nesting=2)(model, guide)
    return model, guide, elbo


def as_tensors(slices: SliceSet, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``images`` (S, C, H, W) float, ``annotations`` (S, R, H, W) long, ``mask`` (S, R) bool on device."""
    return (torch.as_tensor(slices.images, dtype=torch.float32, device=device),
            torch.as_tensor(slices.annotations, dtype=torch.long, device=device),
            torch.as_tensor(slices.mask, dtype=torch.bool, device=device))


def elbo_with_image_noise(elbo: nn.Module, batch: tuple[torch.Tensor, ...], positions: torch.Tensor,
                          noise: tuple[int, int, int]) -> torch.Tensor:
    """``elbo(*batch)`` with each image's latents drawn from its own seed (:class:`ImageNoise`).

    ``positions`` (N,) identify the images; ``noise`` is (seed, stream, global batch number). The
    global RNG state is left as it was.
    """
    device = batch[0].device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            ImageNoise(*noise[:2], positions.tolist(), noise[2]):
        return elbo(*batch)


@torch.no_grad()
def validation_loss(elbo: nn.Module, data: tuple[torch.Tensor, ...], batch_size: int, seed: int,
                    rank: Rank = Rank()) -> float:
    """Negative ELBO per image over ``data``; every image draws the same noise each epoch, so
    epochs compare fairly. In a process group each rank scores its shard and the sums are added."""
    positions = rank.shard(torch.arange(len(data[0])))
    total = 0.0
    for number, start in enumerate(range(0, len(positions), batch_size)):
        part = positions[start:start + batch_size]
        batch = tuple(t[part.to(t.device)] for t in data)
        total += float(elbo_with_image_noise(elbo, batch, part, (seed, VALIDATION_STREAM, number)))
    return rank.sum(total, data[0].device) / len(data[0])


def _shard(rank: Rank, batch: tuple[torch.Tensor, ...],
           positions: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """This rank's part of a global ``batch`` (images, labels, mask) and of the images' ``positions``.

    A rank left without images (a last batch smaller than the world) takes image 0 with every
    rater masked out: it adds nothing to the loss or the gradients, and keeps the ranks' collective
    calls in step.
    """
    if not rank.parallel:
        return batch, positions
    index = rank.shard(torch.arange(len(positions)))
    if len(index):
        return tuple(t[index.to(t.device)] for t in batch), positions[index]
    images, labels, mask = (t[:1] for t in batch)
    return (images, labels, torch.zeros_like(mask)), positions[:1]


def train_step(train_elbo: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, ...],
               positions: torch.Tensor, noise: tuple[int, int, int], grad_clip: float,
               check: Callable[[float, str], None], rank: Rank = Rank(), amp: bool = False) -> float:
    """One SVI step on a global ``batch`` (images, labels, mask) whose images sit at ``positions``
    (N,) of the epoch: this rank's shard through the ELBO with per-image ``noise`` (see
    :func:`elbo_with_image_noise`), backward, gradient clipping (0: none), optimiser step.

    ``check(value, what)`` sees the global loss before the backward pass and the gradient norm
    before the step, and raises to stop. Returns the global loss per image.
    """
    shard, shard_positions = _shard(rank, batch, positions)
    with torch.autocast(batch[0].device.type, dtype=torch.bfloat16, enabled=amp):
        elbo_sum = elbo_with_image_noise(train_elbo, shard, shard_positions, noise)
    # DDP averages the ranks' gradients: each rank's loss is its shard's ELBO x world / global batch.
    loss = elbo_sum * rank.world_size / len(positions)
    loss_value = rank.sum(elbo_sum.item(), batch[0].device) / len(positions)
    check(loss_value, "loss")
    optimizer.zero_grad()
    loss.backward()
    # With grad_clip 0 this only measures: a finite loss can still have a NaN gradient.
    check(float(nn.utils.clip_grad_norm_(train_elbo.parameters(), grad_clip or math.inf)), "gradient norm")
    optimizer.step()
    return loss_value


def resume_state(path: Path, config: ProSegConfig, device: torch.device) -> dict:
    """The training state saved in ``path`` (a ``last.pt``), refused unless it continues a run of ``config``."""
    state = read_checkpoint(path, device)
    missing = [key for key in TRAINING_STATE if key not in state]
    if missing:
        raise CheckpointError(path, f"cannot resume: it holds no training state {missing}")
    saved = {**config_of(state, path).to_dict(), "method": state["method"]}
    changed = [f"{key} {saved[key]!r} -> {value!r}" for key, value in config.to_dict().items()
               if key not in RESUMABLE_KEYS and saved[key] != value]
    if changed:
        raise CheckpointError(path, f"cannot resume with another config ({', '.join(changed)}); "
                                    "use the run's config or train into another folder")
    return state


def _stop_unless_finite(value: float, what: str, epoch: int, out_dir: Path) -> None:
    """Raise TrainingError before a non-finite ``value`` can reach the weights or a checkpoint."""
    if not math.isfinite(value):
        raise TrainingError(f"{out_dir}: {what} became {value} at epoch {epoch}; "
                            "the last good checkpoint is kept (try a lower lr)")


def _write_log(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())


def fit(config: ProSegConfig, train_set: SliceSet, val_set: SliceSet | None, out_dir: str | Path,
        device: torch.device | str = "cpu", resume: bool = False, progress: bool = True,
        stop_after: int | None = None, on_epoch: Callable[[dict], None] | None = None,
        amp: bool = False) -> TrainResult:
    """Train ``config.method`` on ``train_set`` and write ``best.pt``, ``last.pt``, ``config.json``, ``log.csv``.

    ``resume`` continues from ``out_dir/last.pt`` (a run of the same config, but for
    ``RESUMABLE_KEYS``); ``stop_after`` ends the run after that many
    epochs in total (as if interrupted), used to test resuming. ``amp`` runs the ELBO's forward pass
    under bfloat16 autocast (a non-finite loss still stops the run). In a process group every rank
    calls ``fit`` with the same arguments (its own ``device``); rank 0 writes the files.
    """
    rank = current()
    out_dir = Path(out_dir)
    if rank.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model, guide, elbo = build(config, device)
    optimizer = torch.optim.Adam(elbo.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    shuffle = torch.Generator().manual_seed(config.seed)
    augment = JointAugment() if config.augment else None
    result = TrainResult(out_dir)
    stale_epochs, start_epoch = 0, 0
    if resume and (out_dir / "last.pt").exists():
        state = resume_state(out_dir / "last.pt", config, device)
        model.load_state_dict(state["model"])
        guide.load_state_dict(state["guide"])
        optimizer.load_state_dict(state["optimizer"])
        shuffle.set_state(state["rng"]["shuffle"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        start_epoch = state["epoch"] + 1
        result.history = list(state["history"])
        result.best_epoch, result.best_val_loss = state["best_epoch"], state["best_val_loss"]
        stale_epochs = state["stale_epochs"]
    if rank.is_main:
        config.to_json(out_dir / "config.json")
    train_elbo = (DistributedDataParallel(elbo, device_ids=[device] if device.type == "cuda" else None)
                  if rank.grouped else elbo)

    train = as_tensors(train_set, device)
    val = as_tensors(val_set, device) if val_set is not None and len(val_set) else None
    last_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    bar = tqdm(range(start_epoch, last_epoch), desc="train", unit="epoch", disable=not (progress and rank.is_main),
               leave=False)
    for epoch in bar:
        if stale_epochs >= config.patience:
            break
        tic = time.perf_counter()
        elbo.train()
        order = torch.randperm(len(train[0]), generator=shuffle)
        epoch_loss, seen = 0.0, 0
        check = functools.partial(_stop_unless_finite, epoch=epoch, out_dir=out_dir)
        for number, start in enumerate(range(0, len(order), config.batch_size)):
            index = order[start:start + config.batch_size].to(device)
            images, labels, mask = (t[index] for t in train)
            if augment is not None:  # drawn for the global batch, alike on every rank
                images, labels = augment(images, labels, generator=shuffle)
            loss_value = train_step(train_elbo, optimizer, (images, labels, mask), start + torch.arange(len(index)),
                                    (config.seed, epoch + 1, number), config.grad_clip, check, rank, amp)
            epoch_loss += loss_value * len(index)
            seen += len(index)
        elbo.eval()
        row = {"epoch": epoch, "train_loss": epoch_loss / seen,
               "val_loss": validation_loss(elbo, val, config.batch_size, config.seed, rank) if val else float("nan"),
               "seconds": time.perf_counter() - tic}
        monitored = row["val_loss"] if val else row["train_loss"]
        improved = monitored < result.best_val_loss
        if improved:
            result.best_epoch, result.best_val_loss, stale_epochs = epoch, monitored, 0
        else:
            stale_epochs += 1
        result.history.append(row)
        if rank.is_main:
            content = dict(method=config.method, config=config.to_dict(), model=model.state_dict(),
                           guide=guide.state_dict(), epoch=epoch, metrics=row)
            if improved:
                save_checkpoint(out_dir / "best.pt", **content)
            rng = {"shuffle": shuffle.get_state(), "torch": torch.get_rng_state()}
            if device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(device)
            save_checkpoint(out_dir / "last.pt", **content, optimizer=optimizer.state_dict(), rng=rng,
                            history=result.history, best_epoch=result.best_epoch,
                            best_val_loss=result.best_val_loss, stale_epochs=stale_epochs)
            _write_log(out_dir / "log.csv", result.history)
            bar.set_postfix(train=f"{row['train_loss']:.1f}", val=f"{row['val_loss']:.1f}")
        if on_epoch is not None:
            on_epoch(row)
    return result
