"""Train/val/test splits by subject, so that no subject's images fall on both sides of a split."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def subject_splits(subjects: Iterable[str], fractions: tuple[float, float, float] = SPLIT_FRACTIONS
                   ) -> dict[str, str]:
    """Assign each subject to train/val/test by ``fractions``, deterministically: subjects are
    ordered by a hash of their name, so the result does not depend on file or manifest order."""
    ordered = sorted(set(subjects), key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    n_train = int(round(fractions[0] * len(ordered)))
    n_val = int(round(fractions[1] * len(ordered)))
    return {name: "train" if i < n_train else "val" if i < n_train + n_val else "test"
            for i, name in enumerate(ordered)}


def folder_split(relative: Path) -> str:
    """The split named by the first enclosing folder of ``relative`` that starts with ``train``,
    ``val`` or ``test`` (case-insensitive), else ``""``."""
    for part in relative.parts[:-1]:
        for split in SPLITS:
            if part.lower().startswith(split):
                return split
    return ""
