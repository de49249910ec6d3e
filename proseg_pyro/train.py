"""Stochastic variational inference for ProSeg (and every registered method): the ELBO module, a torch optimiser and a plain loop.

Validation ELBO each epoch, early stopping, ``best.pt``/``last.pt`` checkpoints (with optimiser and
RNG states, so a resumed run continues exactly), a CSV log, and a clear stop on a non-finite loss.
"""
from __future__ import annotations

import csv
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
from tqdm.auto import tqdm

from .checkpoint import config_of, read_checkpoint, save_checkpoint
from .config import ProSegConfig
from .data.slices import SliceSet
from .data.transforms import JointAugment
from .errors import CheckpointError, ProSegError
from .io_utils import atomic_write_text
from .methods import get_method


class TrainingError(ProSegError):
    """Training cannot go on (for example the loss became NaN); the last good checkpoint is kept."""


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


@torch.no_grad()
def validation_loss(elbo: nn.Module, data: tuple[torch.Tensor, ...], batch_size: int, seed: int) -> float:
    """Negative ELBO per image over ``data``, with a fixed seed so epochs compare fairly."""
    images, labels, mask = data
    total = 0.0
    with torch.random.fork_rng(devices=[images.device] if images.is_cuda else []):
        torch.manual_seed(seed)
        for start in range(0, len(images), batch_size):
            stop = start + batch_size
            total += float(elbo(images[start:stop], labels[start:stop], mask[start:stop]))
    return total / len(images)


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
        stop_after: int | None = None, on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``config.method`` on ``train_set`` and write ``best.pt``, ``last.pt``, ``config.json``, ``log.csv``.

    ``resume`` continues from ``out_dir/last.pt`` (a run of the same config, but for
    ``RESUMABLE_KEYS``); ``stop_after`` ends the run after that many
    epochs in total (as if interrupted), used to test resuming.
    """
    out_dir = Path(out_dir)
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
    config.to_json(out_dir / "config.json")

    train = as_tensors(train_set, device)
    val = as_tensors(val_set, device) if val_set is not None and len(val_set) else None
    last_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    bar = tqdm(range(start_epoch, last_epoch), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        if stale_epochs >= config.patience:
            break
        tic = time.perf_counter()
        elbo.train()
        order = torch.randperm(len(train[0]), generator=shuffle)
        epoch_loss, seen = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size].to(device)
            images, labels, mask = (t[index] for t in train)
            if augment is not None:
                images, labels = augment(images, labels, generator=shuffle)
            loss = elbo(images, labels, mask) / len(index)
            loss_value = loss.item()
            _stop_unless_finite(loss_value, "loss", epoch, out_dir)
            optimizer.zero_grad()
            loss.backward()
            # With grad_clip 0 this only measures: a finite loss can still have a NaN gradient.
            grad_norm = nn.utils.clip_grad_norm_(elbo.parameters(), config.grad_clip or math.inf)
            _stop_unless_finite(float(grad_norm), "gradient norm", epoch, out_dir)
            optimizer.step()
            epoch_loss += loss_value * len(index)
            seen += len(index)
        elbo.eval()
        row = {"epoch": epoch, "train_loss": epoch_loss / seen,
               "val_loss": validation_loss(elbo, val, config.batch_size, config.seed) if val else float("nan"),
               "seconds": time.perf_counter() - tic}
        monitored = row["val_loss"] if val else row["train_loss"]
        improved = monitored < result.best_val_loss
        if improved:
            result.best_epoch, result.best_val_loss, stale_epochs = epoch, monitored, 0
        else:
            stale_epochs += 1
        result.history.append(row)
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
