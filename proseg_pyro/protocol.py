"""The paper's evaluation protocol: its splits of LIDC-IDRI and NPC, and the mean and spread over folds.

* LIDC-IDRI (a pickle): 4 folds by patient as the released code draws them (patients in the order
  they first appear, shuffled by numpy's legacy generator seeded 1337, cut into 4 contiguous folds
  as scikit-learn's ``KFold`` without shuffling). For test fold ``k`` the other three train, less a
  validation share of their patients (the released code has none: it selects on the test fold).
* NPC (a folder of ``.h5`` cases): the folder's ``train*``/``val*``/``test*`` sub-folders where a
  case lies in one; cases outside them follow the released rearrangement (patients ``Sample_80`` to
  ``Sample_99`` of the challenge's training set validate, the other ``Sample_0`` to ``Sample_99``
  train) and any other case is test.

Every fold's test split is scored per case (a LIDC image, an NPC volume); the folds' rows are
averaged with their spread, the standard deviation over folds (``ddof=0``, as the released
evaluation prints ``mean +- std``).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import metric_table
from .config import ProSegConfig
from .data.formats.lidc import NUM_FOLDS
from .data.slices import SliceSet
from .data.splits import SPLITS
from .errors import DataError
from .evaluate import Evaluation
from .io_utils import atomic_write_text

PAPER_FORMATS = ("lidc", "npc")
RELEASED_SEED = 1337  # RANDOM_SEED of the released configs
VAL_SHARE = 0.1  # of the training patients of a LIDC fold
NPC_VAL_PATIENTS = range(80, 100)  # Sample_80 .. Sample_99: moved to validation/ by the released code
NPC_TRAIN_PATIENTS = range(0, 80)
NPC_PATIENT = re.compile(r"^Sample_(\d+)$")


def paper_format(path: str | Path) -> str:
    """``"lidc"`` or ``"npc"``: the format of a data source the paper's protocol applies to
    (any other source is refused)."""
    from .data.dataset import SYNTHETIC
    from .data.formats import detect

    name = SYNTHETIC if isinstance(path, str) and path == SYNTHETIC else detect(path).name
    if name not in PAPER_FORMATS:
        raise DataError(path, f"--protocol paper applies to LIDC pickles and NPC folders, not to a {name} source")
    return name


def lidc_patient_folds(subjects: Sequence[str], seed: int = RELEASED_SEED, folds: int = NUM_FOLDS
                       ) -> list[list[str]]:
    """The patients of each fold: distinct ``subjects`` in order of first appearance, shuffled by
    ``numpy.random.RandomState(seed)`` and cut into ``folds`` contiguous parts (the first
    ``n % folds`` one patient larger)."""
    patients = list(dict.fromkeys(subjects))
    if len(patients) < folds:
        raise DataError(None, f"{folds} folds by patient need at least {folds} patients, got {len(patients)}")
    np.random.RandomState(seed).shuffle(patients)
    return [list(part) for part in np.array_split(np.array(patients, dtype=object), folds)]


def lidc_fold(slices: SliceSet, fold: int, val_share: float = VAL_SHARE) -> SliceSet:
    """``slices`` with the splits of test fold ``fold``: its patients test, the last ``val_share``
    (at least one) of the other folds' patients in shuffled order validate, the rest train."""
    folds = lidc_patient_folds(slices.subjects)
    training = [patient for index, part in enumerate(folds) if index != fold for patient in part]
    count = max(1, int(round(val_share * len(training))))
    if count >= len(training):
        raise DataError(None, f"fold {fold}: {len(training)} training patients leave none to train on "
                              "after the validation share")
    split = {patient: "test" for patient in folds[fold]}
    split |= {patient: "val" for patient in training[-count:]}
    split |= {patient: "train" for patient in training[:-count]}
    return replace(slices, splits=[split[subject] for subject in slices.subjects])


def npc_splits(slices: SliceSet, folder: str | Path) -> SliceSet:
    """``slices`` of an NPC folder with the released splits: a case's ``train*``/``val*``/``test*``
    sub-folder if it lies in one; else patient ``Sample_<n>`` validates for n in 80..99, trains for
    n in 0..79, and any other case tests. Every split must be non-empty."""
    splits = []
    for case, subject in zip(slices.case_ids, slices.subjects):
        folder_split = next((split for part in Path(case).parts[:-1] for split in SPLITS
                             if part.lower().startswith(split)), "")
        match = NPC_PATIENT.match(subject)
        number = int(match.group(1)) if match else -1
        splits.append(folder_split or ("val" if number in NPC_VAL_PATIENTS
                                       else "train" if number in NPC_TRAIN_PATIENTS else "test"))
    for split in SPLITS:
        if split not in splits:
            raise DataError(folder, f"the paper's protocol finds no {split!r} cases: give {split}*/ sub-folders, "
                                    "or name the cases Sample_<n> (0-79 train, 80-99 validate, others test)")
    return replace(slices, splits=splits)


def paper_folds(slices: SliceSet, source_format: str, path: str | Path) -> list[tuple[str, SliceSet]]:
    """The runs of the paper's protocol as (sub-folder name, slices with that run's splits):
    ``fold-0`` .. ``fold-3`` on LIDC, one run (``""``: the output folder itself) on NPC."""
    if source_format != "lidc":
        return [("", npc_splits(slices, path))]
    try:
        return [(f"fold-{fold}", lidc_fold(slices, fold)) for fold in range(NUM_FOLDS)]
    except DataError as err:
        raise DataError(path, err.problem) from None


def run_names(source_format: str) -> list[str]:
    """The sub-folders of the protocol's runs: ``fold-0`` .. ``fold-3`` on LIDC; ``""`` (the output
    folder itself) for NPC's one run."""
    return [f"fold-{fold}" for fold in range(NUM_FOLDS)] if source_format == "lidc" else [""]


def run_checkpoints(checkpoint: Path, source_format: str) -> list[Path]:
    """Each run's checkpoint: ``CHECKPOINT/fold-k/best.pt`` on LIDC (``CHECKPOINT`` the folder of a
    four-fold training), ``CHECKPOINT`` itself on NPC."""
    if source_format != "lidc":
        return [checkpoint]
    if not checkpoint.is_dir():
        raise DataError(checkpoint, "on LIDC --protocol paper takes the folder of a `train --protocol paper` run "
                                    "(fold-0/best.pt .. fold-3/best.pt)")
    return [checkpoint / name / "best.pt" for name in run_names(source_format)]


def evaluate_folds(runs: list[tuple[str, SliceSet]], checkpoints: list[Path], num_samples: int, convention: str,
                   device, seed: int, check: Callable[[SliceSet, ProSegConfig, Path], None],
                   alpha_star: float | None = None) -> dict[str, Evaluation]:
    """Each run's checkpoint scored on its test split, per case (``check(test, config, checkpoint)``
    refuses data the checkpoint was not trained for); prior draws from Dir(``alpha_star``) where given."""
    from .checkpoint import load_checkpoint
    from .evaluate import evaluate
    from .inference import use_alpha_star

    results = {}
    for (name, slices), checkpoint in zip(runs, checkpoints):
        model, guide, config = load_checkpoint(checkpoint, device, method=None)
        use_alpha_star(model, guide, alpha_star, str(checkpoint))
        test = slices.split("test")
        check(test, config, checkpoint)
        results[name] = evaluate(model, guide, test, num_samples, convention, device, seed, per="case", progress=True)
    return results


def mean_and_spread(rows: Sequence[dict]) -> tuple[dict, dict]:
    """The mean and the standard deviation (``ddof=0``) over ``rows`` of each value (numbers, or
    lists of numbers element by element) that every row holds."""
    keys = [key for key in rows[0] if all(key in row for row in rows)]
    stacked = {key: np.array([row[key] for row in rows], dtype=float) for key in keys}
    mean = {key: values.mean(0).tolist() for key, values in stacked.items()}
    spread = {key: values.std(0).tolist() for key, values in stacked.items()}
    return mean, spread


@dataclass
class FoldSummary:
    """The test rows of every fold (``folds``: name -> row name -> metric -> value) and, per row,
    their ``mean`` and ``spread`` (standard deviation over folds, ``ddof=0``)."""

    raters: list[str]
    settings: dict
    folds: dict[str, dict[str, dict]] = field(default_factory=dict)
    mean: dict[str, dict] = field(default_factory=dict)
    spread: dict[str, dict] = field(default_factory=dict)

    def to_json(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps({"raters": self.raters, "settings": self.settings, "mean": self.mean,
                                            "sd": self.spread, "folds": self.folds}, indent=2) + "\n")

    def markdown(self) -> str:
        """The paper's table as mean +- sd over the folds, then each fold's row."""
        reported = metric_table.columns("main")
        names = metric_table.headers(reported, self.raters)
        keys = lambda row: metric_table.values(row, reported)  # noqa: E731
        header = ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines = [f"Means over the {len(self.folds)} test folds +- their standard deviation (ddof 0); each fold "
                 f"is a mean over its cases ({self.settings.get('samples')} samples, convention "
                 f"{self.settings.get('convention')})", "", *header]
        for row_name, row in self.mean.items():
            cells = [f"{m:.4f} +- {s:.4f}" for m, s in zip(keys(row), keys(self.spread[row_name]))]
            lines.append(f"| {row_name} | " + " | ".join(cells) + " |")
        lines += ["", "Each fold:", "", "| fold | " + header[0][2:], "|---" + header[1]]
        for fold, rows in self.folds.items():
            for row_name, row in rows.items():
                lines.append(f"| {fold} | {row_name} | " + " | ".join(f"{v:.4f}" for v in keys(row)) + " |")
        return "\n".join(lines) + "\n"


def summarise_folds(evaluations: dict[str, Evaluation]) -> FoldSummary:
    """One summary of the folds' evaluations (fold name -> :class:`~proseg_pyro.evaluate.Evaluation`)."""
    first = next(iter(evaluations.values()))
    summary = FoldSummary(first.raters, {**first.settings, "folds": list(evaluations),
                                         "cases": {name: len(result.units) for name, result in evaluations.items()}})
    summary.folds = {name: result.rows for name, result in evaluations.items()}
    for row_name in first.rows:
        summary.mean[row_name], summary.spread[row_name] = mean_and_spread(
            [result.rows[row_name] for result in evaluations.values()])
    return summary
