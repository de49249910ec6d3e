"""The whole job on the built-in set, end to end, scored next to the oracle (the true rater model)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .config import ProSegConfig
from .data import load_dataset
from .data.export import write_manifest_dataset
from .data.slices import SliceSet
from .data.synthetic import SyntheticTruth, make_synthetic
from .errors import DataError
from .evaluate import Evaluation, evaluate, oracle_predictions, score
from .train import TrainResult, fit

SPLITS = ("train", "val", "test")


def write_builtin_set(num_images: int, image_size: int, seed: int, folder: str | os.PathLike
                      ) -> tuple[SliceSet, SyntheticTruth, Path]:
    """The built-in set written to ``folder`` as image files and a manifest, read back and checked to
    be identical (annotations exactly, images within float rounding): the set, its truth, the manifest."""
    slices, truth = make_synthetic(num_images, image_size, seed)
    manifest = write_manifest_dataset(slices, folder)
    reloaded = load_dataset(manifest, config=ProSegConfig(image_size=image_size).fitted_to(slices))
    for name in SPLITS:  # the reloaded set is grouped by split, so compare split by split
        if not (np.array_equal(reloaded.split(name).annotations, slices.split(name).annotations)
                and np.allclose(reloaded.split(name).images, slices.split(name).images, atol=1e-4)):
            raise DataError(manifest, f"the written set does not read back identically (split {name!r})")
    return slices, truth, manifest


def train_and_score(slices: SliceSet, truth: SyntheticTruth, config: ProSegConfig, out_dir: str | os.PathLike,
                    num_samples: int, device: torch.device | str = "cpu") -> tuple[TrainResult, Evaluation]:
    """Train ProSeg on ``slices``' train/val splits into ``out_dir``, evaluate its best checkpoint on
    the test split, with the oracle's rows (``"oracle personalised"``, ``"oracle prior"``) beside its own."""
    result = fit(config, slices.split("train"), slices.split("val"), out_dir, device=device)
    model, guide, _ = load_checkpoint(Path(out_dir) / "best.pt", device)
    test = slices.split("test")
    evaluation = evaluate(model, guide, test, num_samples, device=device, seed=config.seed)
    test_index = np.flatnonzero(np.array(slices.splits) == "test")
    oracle_rows, oracle_cross = score(test, oracle_predictions(truth, test_index, num_samples, config.seed))
    evaluation.rows.update({f"oracle {name}": row for name, row in oracle_rows.items()})
    evaluation.cross_rater_dice["oracle personalised"] = oracle_cross["personalised"]
    return result, evaluation


def format_matrix(matrix: np.ndarray, names: list[str]) -> str:
    """A square matrix (R, R) as aligned text with the names as row and column labels."""
    width = max(8, *(len(name) + 1 for name in names))
    lines = [" " * width + "".join(f"{name:>{width}}" for name in names)]
    lines += [f"{name:<{width}}" + "".join(f"{value:>{width}.3f}" for value in row) for name, row in zip(names, matrix)]
    return "\n".join(lines)
