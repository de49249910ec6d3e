"""ProSeg on real raters: QUBIQ brain growth (39 neonatal MRIs, 7 annotators), against one U-Net.

Holds out ``--holdout`` cases (by a seeded permutation), trains ProSeg and a single U-Net on all
annotations of the rest, and prints the paper's table for both on the held-out cases. The file is
the Medical Matting pickle layout, read by the LIDC reader with rater identities kept.

    python examples/real_data_qubiq.py ../shared/data/qubiq-brain-growth/brain_growth_alpha.zip
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np

from proseg_pyro.checkpoint import load_checkpoint
from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import load_dataset
from proseg_pyro.data.slices import SliceSet
from proseg_pyro.evaluate import evaluate
from proseg_pyro.train import fit


def holdout_splits(slices: SliceSet, holdout: int, validation: int, seed: int) -> SliceSet:
    """``slices`` with ``holdout`` subjects as test, ``validation`` as val and the rest as train."""
    subjects = sorted(set(slices.subjects))
    order = np.random.default_rng(seed).permutation(len(subjects))
    role = {subjects[i]: "test" for i in order[:holdout]}
    role.update({subjects[i]: "val" for i in order[holdout:holdout + validation]})
    return SliceSet(slices.images, slices.annotations, slices.mask, slices.raters, slices.classes, slices.subjects,
                    slices.case_ids, [role.get(subject, "train") for subject in slices.subjects], slices.name)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pickle", help="brain_growth_alpha.zip (or .pkl)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=ProSegConfig.steps)
    parser.add_argument("--holdout", type=int, default=8)
    parser.add_argument("--validation", type=int, default=3)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    base = ProSegConfig(image_size=args.image_size, resize="resize", steps=args.steps, seed=args.seed,
                        batch_size=8)
    slices = holdout_splits(load_dataset(args.pickle, config=base, rank_raters="keep"),
                            args.holdout, args.validation, args.seed)
    base = base.replace(num_raters=len(slices.raters), rater_names=list(slices.raters))
    test = slices.split("test")
    rows = {}
    for method in ("proseg", "unet_pooled"):
        config = base.replace(method=method)
        with tempfile.TemporaryDirectory() as out:
            fit(config, slices.split("train"), slices.split("val"), out, progress=False)
            model, guide, _ = load_checkpoint(f"{out}/best.pt", method=method)
        result = evaluate(model, guide, test, args.samples, seed=args.seed)
        for name, row in result.rows.items():
            rows[f"{method} {name}"] = row
    result.rows = rows
    print(f"QUBIQ brain growth, {len(test)} held-out cases, {len(slices.raters)} raters, "
          f"{args.image_size}x{args.image_size}:")
    print(result.markdown())
    return rows


if __name__ == "__main__":
    main()
