"""Options and helpers shared by the commands: data sources, config, device."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from proseg_pyro.config import PRESETS, ProSegConfig, preset
from proseg_pyro.errors import DataError

SEED = click.IntRange(0, 2 ** 32 - 1)  # the range every random generator seeded from it accepts
PRESET = click.option(
    "--preset", "preset_name", type=click.Choice(list(PRESETS)), default="default", show_default=True,
    help="'paper': the published settings; 'default': what learned rater styles on a CPU budget.")

if TYPE_CHECKING:
    from proseg_pyro.data.slices import SliceSet


def _apply(options: list, function: Callable) -> Callable:
    for option in reversed(options):
        function = option(function)
    return function


def budget_options(function: Callable) -> Callable:
    """``--steps``, ``--epochs`` (converted to steps), ``--image-size`` and ``--batch-size``, each
    passed on as given (None: the config's)."""
    return _apply([
        click.option("--steps", type=click.IntRange(min=1), help="Optimiser steps  [default: the config's]"),
        click.option("--epochs", type=click.IntRange(min=1),
                     help="Instead of --steps: this many passes over the training images, converted to steps  "
                          "[default: the config's, none]"),
        click.option("--image-size", type=click.IntRange(min=8), help="Training patch size  [default: the config's]"),
        click.option("--batch-size", type=click.IntRange(min=1), help="Images per batch  [default: the config's]"),
    ], function)


ALPHA_STAR_OPTION = click.option(
    "--alpha-star", type=click.FloatRange(1e-3, 1e3),
    help="Prior draws take tau* from Dir(ALPHA_STAR) instead of the checkpoint's alpha* (smaller: draws nearer "
         "the corners of the simplex, more diverse; it enters sampling only, so pick it on validation cases with "
         "`evaluate --split val`)  [default: the checkpoint's]")


def style_options(function: Callable) -> Callable:
    """``--rater`` (repeatable, as ``raters``), ``--prior``, ``--alpha-star``, ``--samples`` and ``--device``
    of the commands that segment scans."""
    return _apply([
        click.option("--rater", "raters", multiple=True,
                     help="Segment in this rater's style (repeatable)  [default: every rater the checkpoint knows]"),
        click.option("--prior", is_flag=True,
                     help="Draw diverse samples from the prior instead, and write every sample."),
        ALPHA_STAR_OPTION,
        click.option("--samples", default=50, show_default=True, type=click.IntRange(min=1), help="Samples per slice."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda."),
    ], function)


def data_options(function: Callable) -> Callable:
    """``--data`` (any registered format, detected from the path; none: the built-in set) and the
    reader options; ``--lidc`` and ``--npc`` are hidden aliases of ``--data`` kept for old scripts."""
    options = [
        click.option("--data", type=click.Path(path_type=Path),
                     help="A dataset, its format detected: an nnU-Net v2 / Decathlon folder (dataset.json, imagesTr, "
                          "labelsTr or labelsTr_<rater>/), a JSON manifest, a LIDC pickle (.pkl, .pickle or a .zip "
                          "holding one) or a folder of NPC .h5 files  [default: the built-in synthetic set]"),
        click.option("--lidc", type=click.Path(path_type=Path), hidden=True, help="Alias of --data."),
        click.option("--npc", type=click.Path(path_type=Path), hidden=True, help="Alias of --data."),
        click.option("--keep-raters", is_flag=True,
                     help="LIDC pickle: keep rater slots (real raters) instead of ranking by area."),
        click.option("--fold", type=click.IntRange(0, 3), default=0, show_default=True,
                     help="LIDC pickle: which of the 4 subject folds is the test split."),
        click.option("--allow-outside-paths", is_flag=True,
                     help="Manifest: also read files outside the manifest's folder (absolute, '..' or symlinks out)."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Folder of the preprocessed-slice cache [default: $XDG_CACHE_HOME/proseg-pyro or "
                          "~/.cache/proseg-pyro]."),
        click.option("--no-cache", is_flag=True, help="Read the data afresh; neither read nor write the cache."),
    ]
    function = _apply(options, function)

    @functools.wraps(function)
    def wrapper(*args, data, lidc, npc, keep_raters, fold, allow_outside_paths, cache_dir, no_cache, **kwargs):
        given = [source for source in (data, lidc, npc) if source is not None]
        if len(given) > 1:
            raise click.UsageError("give one data source: --data PATH (--lidc and --npc are its old names)")
        kwargs["source"] = {"path": given[0] if given else "synthetic",
                            "rank_raters": "keep" if keep_raters else "area", "fold": fold,
                            "allow_outside_paths": allow_outside_paths, "cache": not no_cache, "cache_dir": cache_dir}
        return function(*args, **kwargs)

    return wrapper


PROTOCOL = click.option(
    "--protocol", type=click.Choice(["data", "paper"]), default="data", show_default=True,
    help="'data': the data's own splits (--fold for LIDC); 'paper': the paper's, on LIDC pickles and NPC folders "
         "only: on LIDC all 4 patient folds in OUT/fold-0..3 (--fold unused) with a summary over folds, on NPC the "
         "folder's train/val/test sub-folders, else the released split of patients Sample_0..99.")


def paper_format(source: dict, protocol: str) -> str | None:
    """The source's format under ``--protocol paper`` ("lidc" or "npc"; other sources refused), None otherwise."""
    if protocol != "paper":
        return None
    from proseg_pyro.protocol import paper_format as source_format

    return source_format(source["path"])


def runs_of(slices: SliceSet, source: dict, source_format: str | None) -> list[tuple[str, SliceSet]]:
    """The runs a command makes on ``slices``: one on the data's splits (sub-folder ``""``), or the
    paper protocol's (:func:`proseg_pyro.protocol.paper_folds`)."""
    if source_format is None:
        return [("", slices)]
    from proseg_pyro.protocol import paper_folds

    return paper_folds(slices, source_format, source["path"])


def with_training_spacing(source: dict, config: ProSegConfig) -> ProSegConfig:
    """``config`` with its in-plane spacing set: its own, else the median of the source's training
    cases (unchanged for sources without a spacing)."""
    from proseg_pyro.data.dataset import dataset_spacing

    if config.spacing is not None:
        return config
    spacing = dataset_spacing(source["path"], source["rank_raters"], source["fold"], source["allow_outside_paths"])
    return config if spacing is None else config.replace(spacing=[round(value, 6) for value in spacing])


def load_source(source: dict, config: ProSegConfig, split: str | None = None, whole: bool = False) -> SliceSet:
    """The dataset a command's data options name, preprocessed for ``config`` (``whole``: slices
    keep their whole field of view, as evaluation scores them)."""
    from proseg_pyro.data import load_dataset

    slices = load_dataset(source["path"], split=None, config=config, rank_raters=source["rank_raters"],
                          fold=source["fold"], seed=config.seed, cache=source["cache"], cache_dir=source["cache_dir"],
                          allow_outside_paths=source["allow_outside_paths"], whole=whole)
    return slices if split is None else nonempty_split(slices, split, source)


def load_training_source(source: dict, config: ProSegConfig) -> SliceSet:
    """The dataset as training reads it: with ``resize="crop"`` every slice keeps its whole field
    of view (training cuts ``image_size`` patches from it, validation scores it whole, as
    ``evaluate`` does); with ``"resize"`` each slice is resized to ``image_size``."""
    return load_source(source, config, whole=config.resize == "crop")


def nonempty_split(slices: SliceSet, split: str, source: dict) -> SliceSet:
    """The slices of ``split``; a split that is empty or holds no annotation is an error naming the
    data source (training on it would report a loss of nothing, scoring it would average nothing)."""
    chosen = slices.split(split)
    if len(chosen) == 0:
        raise DataError(source["path"], f"the {split!r} split is empty")
    if not chosen.mask.any():
        raise DataError(source["path"], f"the {split!r} split holds no annotation")
    return chosen


def check_fits(slices: SliceSet, config: ProSegConfig, source: dict, checkpoint: Path, raters: bool = True) -> None:
    """Stop unless the data has the image channels and classes ``checkpoint`` was trained on, and
    (with ``raters``) its raters."""
    found = {"image channels": slices.images.shape[1], "classes": len(slices.classes)}
    trained = {"image channels": config.in_channels, "classes": config.num_classes}
    if raters:
        found["raters"] = list(slices.raters) if config.rater_names else len(slices.raters)
        trained["raters"] = config.rater_names or config.num_raters
    for what, value in found.items():
        if value != trained[what]:
            raise DataError(source["path"], f"{what} {value} do not match {checkpoint.name}'s {trained[what]}")


def read_config(path: Path | None, preset_name: str, **overrides) -> ProSegConfig:
    """A preset, then a JSON config file's values, then command-line overrides (None: not given)."""
    config = preset(preset_name)
    if path is not None:
        config = ProSegConfig.from_json(path, base=config)
    if overrides.get("steps") is not None and overrides.get("epochs") is None:
        config = config.replace(epochs=None)  # a budget in steps replaces one in epochs (a preset's, say)
    return config.replace(**{key: value for key, value in overrides.items() if value is not None})
