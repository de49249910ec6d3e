"""Stochastic variational inference for ProSeg (and every registered method): the ELBO module, a
torch optimiser and a plain loop budgeted in optimiser steps.

Each step draws a batch with replacement (augmented; where slices are larger than the model's
``image_size``, a patch, part of them centred on foreground), read from the sets' arrays (the
memory-mapped slice cache, for sets loaded from files) and converted on the device batch by batch.
Every ``val_every`` steps the run is validated (ELBO and the Dice of the personalised
predictions), ``best.pt`` keeps the best validation Dice and ``last.pt`` the state to resume from exactly (optimiser and RNG states); a CSV log, a
learning-rate warm-up and decay (:mod:`proseg_pyro.schedule`), and a clear stop on a non-finite loss.
The ELBO's samples of each image come from a seed of its own (run seed, step, position in the
batch), so in a process group (``torchrun``, see :mod:`proseg_pyro.distributed`), where the ELBO
module runs under ``DistributedDataParallel`` on each rank's shard of every batch, a run ends
where one process ends.
"""
from __future__ import annotations

import csv
import functools
import io
import math
import statistics
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
from .data.patches import draw_batch, to_device
from .data.transforms import JointAugment
from .distributed import Rank, current, elbo_with_image_noise
from .errors import CheckpointError, ProSegError
from .io_utils import atomic_write_text
from .methods import get_method
from .schedule import learning_rate, total_steps
from .validation import validation_dice, validation_loss


class TrainingError(ProSegError):
    """Training cannot go on (for example the loss became NaN); the last good checkpoint is kept."""


# Config values a resumed run may change: they decide when it stops (a longer budget also stretches
# the decay of the learning rate from the step it resumes at).
RESUMABLE_KEYS = ("steps", "epochs", "patience", "num_workers")
TRAINING_STATE = ("optimizer", "rng", "step", "history", "best_step", "best_score", "stale")


@dataclass
class TrainResult:
    """What a run produced: one ``history`` row per validation and the best one.

    ``best_score`` is the validation Dice of ``best.pt`` (minus the training loss where the run had
    no validation images); ``predicts_nothing`` whether the best model predicted no foreground for
    any validation image and rater although the annotations have some.
    """

    out_dir: Path
    history: list[dict] = field(default_factory=list)
    best_step: int = -1
    best_score: float = -math.inf

    @property
    def predicts_nothing(self) -> bool:
        rows = [row for row in self.history if row["step"] == self.best_step]
        return bool(rows) and rows[0]["val_empty"] == 1.0


def build(config: ProSegConfig, device: torch.device | str = "cpu") -> tuple[PyroModule, PyroModule, nn.Module]:
    """Model, guide and the ELBO loss module over both (its parameters are all trainable weights)."""
    pyro.set_rng_seed(config.seed)
    model, guide = get_method(config.method).build(config)
    model, guide = model.to(device), guide.to(device)
    elbo = pyro.infer.Trace_ELBO(max_plate_nesting=2)(model, guide)
    return model, guide, elbo


def as_tensors(slices: SliceSet, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A whole (small) set as one batch: ``images`` (S, C, H, W) float, ``annotations`` (S, R, H, W)
    long, ``mask`` (S, R) bool on device (training itself assembles its batches on the fly)."""
    return to_device(slices.images, slices.annotations, slices.mask, device)


def _shard(rank: Rank, batch: tuple[torch.Tensor, ...],
           positions: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """This rank's part of a global ``batch`` (images, labels, mask) and of the images' ``positions``.

    A rank left without images (a batch smaller than the world) takes image 0 with every rater
    masked out: it adds nothing to the loss or the gradients, and keeps the ranks' collective
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
               check: Callable[[float, str], None], rank: Rank = Rank(), amp: bool = False) -> tuple[float, float]:
    """One SVI step on a global ``batch`` (images, labels, mask) whose images sit at ``positions``
    (N,) of the batch: this rank's shard through the ELBO with per-image ``noise`` (see
    :func:`elbo_with_image_noise`), backward, gradient clipping (0: none), optimiser step.

    ``check(value, what)`` sees the global loss before the backward pass and the gradient norm
    before the step, and raises to stop. Returns the global loss per image and the gradient's norm
    before clipping.
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
    norm = float(nn.utils.clip_grad_norm_(train_elbo.parameters(), grad_clip or math.inf))
    check(norm, "gradient norm")
    optimizer.step()
    return loss_value, norm


def make_optimizer(config: ProSegConfig, elbo: nn.Module, guide: PyroModule) -> torch.optim.Adam:
    """Adam over the ELBO module's parameters; the guide's ``rater_parameters()`` (where it has them)
    in a group of their own whose rate is ``config.rater_lr_scale`` times the others'."""
    raters = list(guide.rater_parameters()) if hasattr(guide, "rater_parameters") else []
    chosen = {id(parameter) for parameter in raters}
    rest = [parameter for parameter in elbo.parameters() if id(parameter) not in chosen]
    groups = [{"params": rest, "scale": 1.0}] + ([{"params": raters, "scale": config.rater_lr_scale}] if raters else [])
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)


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


def _stop_unless_finite(value: float, what: str, step: int, out_dir: Path) -> None:
    """Raise TrainingError before a non-finite ``value`` can reach the weights or a checkpoint."""
    if not math.isfinite(value):
        raise TrainingError(f"{out_dir}: {what} became {value} at step {step}; "
                            "the last good checkpoint is kept (try a lower lr)")


def _write_log(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())


def fit(config: ProSegConfig, train_set: SliceSet, val_set: SliceSet | None, out_dir: str | Path,
        device: torch.device | str = "cpu", resume: bool = False, progress: bool = True,
        stop_after: int | None = None, on_validation: Callable[[dict], None] | None = None,
        amp: bool = False) -> TrainResult:
    """Train ``config.method`` on ``train_set`` and write ``best.pt``, ``last.pt``, ``config.json``, ``log.csv``.

    The run takes :func:`~proseg_pyro.schedule.total_steps` optimiser steps (or stops early after
    ``config.patience`` validations without a better validation Dice). ``resume`` continues from
    ``out_dir/last.pt`` (a run of the same config, but for ``RESUMABLE_KEYS``); ``stop_after`` ends
    the run after that many steps in total (as if interrupted: steps after the last validation are
    lost), used to test resuming. ``amp`` runs the ELBO's forward pass under bfloat16 autocast (a
    non-finite loss still stops the run). In a process group every rank calls ``fit`` with the same
    arguments (its own ``device``); rank 0 writes the files.
    """
    rank = current()
    out_dir = Path(out_dir)
    if rank.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model, guide, elbo = build(config, device)
    optimizer = make_optimizer(config, elbo, guide)
    draws = torch.Generator().manual_seed(config.seed)
    augment = JointAugment() if config.augment else None
    result = TrainResult(out_dir)
    stale, start_step = 0, 0
    if resume and (out_dir / "last.pt").exists():
        state = resume_state(out_dir / "last.pt", config, device)
        model.load_state_dict(state["model"])
        guide.load_state_dict(state["guide"])
        optimizer.load_state_dict(state["optimizer"])
        draws.set_state(state["rng"]["draws"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        start_step = state["step"] + 1
        result.history = list(state["history"])
        result.best_step, result.best_score, stale = state["best_step"], state["best_score"], state["stale"]
    if rank.is_main:
        config.to_json(out_dir / "config.json")
    train_elbo = (DistributedDataParallel(elbo, device_ids=[device] if device.type == "cuda" else None)
                  if rank.grouped else elbo)

    # batches are read from the sets' arrays (memory-mapped where the sets come from the slice cache)
    train = (train_set.images, train_set.annotations, train_set.mask)
    val = (val_set.images, val_set.annotations, val_set.mask) if val_set is not None and len(val_set) else None
    val_inside = val_set.inside() if val else None  # predictions in the padding count for nothing
    steps = total_steps(config, len(train_set))
    last_step = steps if stop_after is None else min(steps, stop_after)
    check = functools.partial(_stop_unless_finite, out_dir=out_dir)
    # disable=None: no bar when the output is not a terminal (a redirected log stays clean)
    bar = tqdm(range(start_step, last_step), desc="train", unit="step",
               disable=None if progress and rank.is_main else True, leave=False)
    round_loss, norms, tic = 0.0, [], time.perf_counter()
    elbo.train()
    for step in bar:
        lr = learning_rate(config, step, steps)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        # drawn for the global batch, alike on every rank
        images, labels, mask = draw_batch(train, config.batch_size, config.image_size, config.foreground_share, draws,
                                          device)
        if augment is not None:
            images, labels = augment(images, labels, generator=draws)
        loss_value, norm = train_step(train_elbo, optimizer, (images, labels, mask), torch.arange(len(images)),
                                     (config.seed, step + 1, 0), config.grad_clip,
                                     functools.partial(check, step=step), rank, amp)
        round_loss = round_loss + loss_value
        norms.append(norm)
        if (step + 1) % config.val_every and step + 1 != steps:
            continue
        elbo.eval()
        row = {"step": step, "lr": lr, "train_loss": round_loss / len(norms),
               "val_loss": validation_loss(elbo, val, config.batch_size, config.seed, device, rank) if val else float("nan"),
               "val_dice": float("nan"), "val_empty": float("nan"),
               "grad_norm": statistics.median(norms),
               "clipped": sum(norm > config.grad_clip for norm in norms) / len(norms) if config.grad_clip else 0.0}
        if val:
            row["val_dice"], row["val_empty"] = validation_dice(model, guide, val, config.batch_size, config.seed, device,
                                                                val_inside)
        row["seconds"] = time.perf_counter() - tic
        elbo.train()
        score = row["val_dice"] if val else -row["train_loss"]
        improved = score > result.best_score
        if improved:
            result.best_step, result.best_score, stale = step, score, 0
        else:
            stale += 1
        result.history.append(row)
        if rank.is_main:
            content = dict(method=config.method, config=config.to_dict(), model=model.state_dict(),
                           guide=guide.state_dict(), step=step, metrics=row)
            if improved:
                save_checkpoint(out_dir / "best.pt", **content)
            rng = {"draws": draws.get_state(), "torch": torch.get_rng_state()}
            if device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(device)
            save_checkpoint(out_dir / "last.pt", **content, optimizer=optimizer.state_dict(), rng=rng,
                            history=result.history, best_step=result.best_step, best_score=result.best_score,
                            stale=stale)
            _write_log(out_dir / "log.csv", result.history)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", dice=f"{row['val_dice']:.3f}")
        if on_validation is not None:
            on_validation(row)
        round_loss, norms, tic = 0.0, [], time.perf_counter()
        if stale >= config.patience:
            break
    return result
