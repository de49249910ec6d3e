"""Segment scans and write their results: one scan into a folder (``sample``), or a folder of scans,
one result folder per case and a summary table (``predict``).

A case's result folder is written under a temporary name and renamed when complete, so an
interrupted run leaves finished cases and nothing half-written; the next run skips finished cases
(made with the same settings) and does the rest.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyro
import torch
from tqdm.auto import tqdm

from .config import ProSegConfig
from .data.export import safe_name
from .data.formats.nnunet import IMAGE_ENDINGS, channel_cases
from .errors import ProSegError
from .guide import ProSegGuide
from .inference import takes_alpha_star
from .io_utils import atomic_write_text
from .limits import require_sampling_memory
from .model import ProSegModel
from .outputs import PARTIAL_PREFIX, folder_lock
from .volume import prepare_scan, read_scan, segment_scan, style_files, write_style

SUMMARY = "summary.json"
TABLE = "summary.csv"
TABLE_COLUMNS = ("case", "style", "volume_ml", "sample_mean_ml", "sample_std_ml", "sample_p05_ml",
                 "sample_median_ml", "sample_p95_ml", "warnings")


@dataclass(frozen=True)
class Request:
    """What to draw: rater ``slots`` (None: the prior), ``samples`` per slice, ``seed`` (set before
    each scan, so a scan's result does not depend on the scans before it), and the ``checkpoint``
    path (recorded in the summaries)."""

    slots: list[int] | None
    samples: int
    seed: int
    checkpoint: str

    def stems(self, config: ProSegConfig) -> list[str]:
        """Output name stem of each style: ``prior`` or ``rater-<name>``."""
        if self.slots is None:
            return ["prior"]
        return [f"rater-{safe_name(config.slot_names()[slot])}" for slot in self.slots]

    def files(self, config: ProSegConfig, out_dir: Path) -> list[dict[str, Path]]:
        """Every style's output files in ``out_dir`` (see :func:`~proseg_pyro.volume.style_files`)."""
        return [style_files(out_dir, stem, self.samples if self.slots is None else None)
                for stem in self.stems(config)]

    def outputs(self, config: ProSegConfig, out_dir: Path) -> list[Path]:
        """The paths in ``out_dir`` that must not exist yet: each style's volumes and, for the prior,
        its first sample mask (which stands for its folder). Listed without enumerating the samples,
        so that an absurd ``samples`` meets the memory check, not a list of a billion file names."""
        return [path for stem in self.stems(config)
                for path in style_files(out_dir, stem, None if self.slots is not None else 1).values()]

    def settings(self, model: ProSegModel) -> dict:
        """What makes two results of ``model`` comparable (a finished case is reused only under the
        same); prior draws also depend on the concentration ``alpha_star`` they take tau* from, where
        the model's draws take one."""
        config = model.config
        prior = {"alpha_star": config.alpha_star} if self.slots is None and takes_alpha_star(model) else {}
        return {"checkpoint": self.checkpoint, "samples": self.samples, "seed": self.seed,
                "styles": self.stems(config), **prior}


def segment_to_folder(model: ProSegModel, guide: ProSegGuide, images: list[Path], out_dir: Path, request: Request,
                      device: torch.device | str = "cpu", progress: bool = False,
                      warn: Callable[[str], None] | None = None) -> dict:
    """Segment the scan of channel files ``images`` and write every style's volumes and
    ``summary.json`` (volumes in mL and their spread, the scan's geometry, warnings) into
    ``out_dir``; returns the summary. ``warn`` gets each warning line about the scan."""
    config = model.config
    scan = read_scan(images, config.in_channels)
    require_sampling_memory(request.samples, len(request.stems(config)), scan.images.shape, config.num_classes,
                            request.slots is None, "--samples")
    prepared = prepare_scan(scan, config)
    for note in prepared.notes:
        if warn is not None:
            warn(note)
    pyro.set_rng_seed(request.seed)
    results = segment_scan(model, guide, scan, request.slots, request.samples, device, progress=progress,
                           prepared=prepared)
    styles = {maps.name: write_style(maps, scan, files)
              for maps, files in zip(results, request.files(config, out_dir))}
    geometry = scan.geometry
    summary = {**request.settings(model), "image": [str(path) for path in scan.paths],
               "geometry": {"size": geometry.size, "spacing": geometry.spacing, "origin": geometry.origin,
                            "direction": geometry.direction},
               "model_spacing": list(prepared.model.spacing[:2]), "voxel_ml": scan.voxel_ml,
               "warnings": prepared.notes, "prior" if request.slots is None else "raters": styles}
    atomic_write_text(out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def summary_rows(case: str, summary: dict) -> list[dict]:
    """One table row per style of a case's summary (:data:`TABLE_COLUMNS`)."""
    styles = summary.get("raters") or summary.get("prior")
    rows = []
    for style, values in styles.items():
        spread = values["sample_volume_ml"]
        rows.append({"case": case, "style": style, "volume_ml": values["volume_ml"],
                     "sample_mean_ml": spread["mean"], "sample_std_ml": spread["std"],
                     "sample_p05_ml": spread["p05"], "sample_median_ml": spread["median"],
                     "sample_p95_ml": spread["p95"], "warnings": " | ".join(summary.get("warnings", []))})
    return rows


@dataclass
class FolderResult:
    """Per case its summary; which cases were ``segmented`` now and which ``skipped`` (done before)."""

    summaries: dict[str, dict]
    segmented: list[str]
    skipped: list[str]
    table: Path


def _finished(case_dir: Path, settings: dict, force: bool) -> dict | None:
    """The summary of a finished result of ``settings`` in ``case_dir``, None if there is none to keep."""
    if not case_dir.exists() or force:
        return None
    try:
        summary = json.loads((case_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        raise ProSegError(f"{case_dir}: exists but holds no readable {SUMMARY}, so it is not a finished result "
                          "(remove it, or use --force to redo it)") from None
    if {key: summary.get(key) for key in settings} != settings:
        raise ProSegError(f"{case_dir}: a result made with other settings ({_difference(summary, settings)}); "
                          "use --force to redo it, or another output folder")
    return summary


def _difference(summary: dict, settings: dict) -> str:
    return ", ".join(f"{key} {summary.get(key)!r} != {value!r}" for key, value in settings.items()
                     if summary.get(key) != value)


def predict_folder(model: ProSegModel, guide: ProSegGuide, in_dir: Path, out_dir: Path, request: Request,
                   device: torch.device | str = "cpu", force: bool = False,
                   warn: Callable[[str], None] | None = None,
                   on_case: Callable[[str], None] | None = None) -> FolderResult:
    """Segment every case of ``in_dir`` (nnU-Net naming ``CASE_0000.nii.gz`` per channel, or one
    plain file per case) into ``out_dir/CASE/``, and write ``out_dir/summary.csv`` (one row per case
    and style). Finished cases are skipped unless ``force``. ``warn`` gets each warning line
    (prefixed with the case), ``on_case`` each case's name after it is written. One process at a
    time writes ``out_dir`` (:func:`~proseg_pyro.outputs.folder_lock`; a second is refused).

    A folder with no scans, a case missing a channel or mixed channel counts raise DataError before
    any case is segmented or ``out_dir`` is created.
    """
    cases = channel_cases(in_dir, IMAGE_ENDINGS, model.config.in_channels)
    with folder_lock(out_dir):
        return _predict_cases(model, guide, cases, out_dir, request, device, force, warn, on_case)


def _predict_cases(model: ProSegModel, guide: ProSegGuide, cases: dict[str, list[Path]], out_dir: Path,
                   request: Request, device: torch.device | str, force: bool, warn: Callable[[str], None] | None,
                   on_case: Callable[[str], None] | None) -> FolderResult:
    """:func:`predict_folder`'s work on the listed ``cases``, holding the folder's lock."""
    settings = request.settings(model)
    summaries, segmented, skipped = {}, [], []
    for case, images in tqdm(cases.items(), desc="predict", unit="case", disable=None):
        case_dir = out_dir / safe_name(case)
        done = _finished(case_dir, settings, force)
        if done is not None:
            summaries[case] = done
            skipped.append(case)
            continue
        partial = out_dir / f"{PARTIAL_PREFIX}{safe_name(case)}"
        shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
        partial.mkdir(parents=True)
        summary = segment_to_folder(model, guide, images, partial, request, device,
                                    warn=None if warn is None else lambda note, case=case: warn(f"{case}: {note}"))
        summaries[case] = _relocated(summary, partial, case_dir)
        atomic_write_text(partial / SUMMARY, json.dumps(summaries[case], indent=2) + "\n")
        _replace_folder(partial, case_dir)
        segmented.append(case)
        if on_case is not None:
            on_case(case)
    table = out_dir / TABLE
    atomic_write_text(table, _table([row for case, summary in summaries.items()
                                     for row in summary_rows(case, summary)]))
    return FolderResult(summaries, segmented, skipped, table)


def _relocated(summary: dict, partial: Path, final: Path) -> dict:
    """``summary`` with its file paths moved from the temporary folder to the final one."""
    text = json.dumps(summary).replace(json.dumps(str(partial))[1:-1], json.dumps(str(final))[1:-1])
    return json.loads(text)


def _replace_folder(new: Path, target: Path) -> None:
    """Move the complete folder ``new`` to ``target``; an old ``target`` (``--force``) goes only after."""
    old = None
    if target.exists():
        old = target.with_name(f"{PARTIAL_PREFIX}old-{target.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _table(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: f"{value:.4f}" if isinstance(value, float) else value for key, value in row.items()})
    return buffer.getvalue()
