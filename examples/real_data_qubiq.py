"""Compared methods on real raters: QUBIQ brain growth (39 neonatal MRIs, 7 annotators).

Holds out ``--holdout`` cases as test and ``--validation`` as validation (by a seeded permutation of
the subjects), trains every method of ``--methods`` on all annotations of the rest at one step
budget, each with its learning rate picked from ``--lr-grid`` on the validation cases and then run
with every seed of ``--seeds``, and writes the comparison tables (mean +- sd over seeds, paired
tests) to ``--out``. Finished runs are reused, so an interrupted race continues where it stopped.
The file is the Medical Matting pickle layout, read by the LIDC reader with rater identities kept.

    python examples/real_data_qubiq.py ../shared/data/qubiq-brain-growth/brain_growth_alpha.zip \
        --methods proseg,unet_pooled,dpersona --seeds 0,1,2 --lr-grid 0.001,0.003 [--config shared.json]
        [--method-lr dpersona=3e-3]
"""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from proseg_pyro.compare import compare, parse_method_lr, parse_methods
from proseg_pyro.config import ProSegConfig
from proseg_pyro.data import load_dataset
from proseg_pyro.data.slices import SliceSet
from proseg_pyro.io_utils import atomic_write_text


def holdout_splits(slices: SliceSet, holdout: int, validation: int, seed: int) -> SliceSet:
    """``slices`` with ``holdout`` subjects as test, ``validation`` as val and the rest as train."""
    subjects = sorted(set(slices.subjects))
    order = np.random.default_rng(seed).permutation(len(subjects))
    role = {subjects[i]: "test" for i in order[:holdout]}
    role.update({subjects[i]: "val" for i in order[holdout:holdout + validation]})
    return dataclasses.replace(slices, splits=[role.get(subject, "train") for subject in slices.subjects])


def _numbers(text: str, kind: type) -> list:
    return [kind(item) for item in text.split(",") if item]


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pickle", help="brain_growth_alpha.zip (or .pkl)")
    parser.add_argument("--methods", default="proseg,unet_pooled", help="comma-separated, or 'all'")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--config", help="JSON file of hyperparameters (e.g. {\"z_head\": \"shared\"}); "
                                         "keys it leaves out keep this script's settings")
    parser.add_argument("--steps", type=int, default=ProSegConfig.steps)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--lr-grid", default="", help="comma-separated learning rates (empty: the config's)")
    parser.add_argument("--method-lr", default="", help="rates per method instead of the grid's pick, "
                                                        "e.g. dpersona=3e-3,unet_pooled=3e-3")
    parser.add_argument("--holdout", type=int, default=8)
    parser.add_argument("--validation", type=int, default=3)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--out", default="runs/qubiq-compare")
    args = parser.parse_args(argv)

    base = ProSegConfig(image_size=args.image_size, resize="resize", steps=args.steps, batch_size=8)
    if args.config:
        base = ProSegConfig.from_json(args.config, base=base)
    slices = holdout_splits(load_dataset(args.pickle, config=base, rank_raters="keep"),
                            args.holdout, args.validation, args.split_seed)
    base = base.fitted_to(slices)
    result = compare(slices, base, parse_methods(args.methods), args.out, args.samples, progress=False,
                     seeds=_numbers(args.seeds, int), lr_grid=_numbers(args.lr_grid, float),
                     method_lr=parse_method_lr(args.method_lr))
    result.to_json(f"{args.out}/comparison.json")
    atomic_write_text(f"{args.out}/comparison.md", result.markdown())
    print(f"QUBIQ brain growth, {args.holdout} held-out cases, {len(slices.raters)} raters, "
          f"{args.image_size}x{args.image_size}:")
    print(result.markdown())
    return result


if __name__ == "__main__":
    main()
