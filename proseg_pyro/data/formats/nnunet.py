"""nnU-Net v2 / Medical Segmentation Decathlon folders, with several raters as sibling label folders.

Layout::

    Dataset001_Lesion/
      dataset.json            {"channel_names": {"0": "T2"}, "labels": {"background": 0, "lesion": 1},
                               "file_ending": ".nii.gz"}   (Decathlon: "modality", {"0": "background", ...})
      imagesTr/CASE_0000.nii.gz, CASE_0001.nii.gz ...    one file per channel
      labelsTr/CASE.nii.gz                               one rater, named "rater"
      labelsTr_<rater>/CASE.nii.gz                       or one folder per rater (labelsTr_A1/, labelsTr_A2/)

A case a rater did not annotate has no file in that rater's folder (the rater is masked out for
it). Splits are assigned by case (:func:`~proseg_pyro.data.splits.subject_splits`). The folder
is translated into a :class:`~proseg_pyro.data.formats.manifest.Manifest`, so it is read, checked and
cached exactly as a manifest is. :func:`channel_cases` groups a folder of scans by case (also used
by ``predict``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...io_utils import read_json
from ..slices import SliceSet
from .format import Format, ReadOptions
from .manifest import Manifest, load_manifest, training_spacings

IMAGE_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".tif", ".tiff", ".png")
DEFAULT_RATER = "rater"
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _ending(name: str, endings: tuple[str, ...]) -> str | None:
    return next((ending for ending in endings if name.lower().endswith(ending)), None)


def channel_cases(folder: Path, endings: tuple[str, ...] = IMAGE_ENDINGS,
                  channels: int | None = None) -> dict[str, list[Path]]:
    """Scans in ``folder`` grouped by case, channels in order: ``CASE_0000.nii.gz``,
    ``CASE_0001.nii.gz`` ... (nnU-Net naming), or one plain file per case (``CASE.nii.gz``) when no
    file carries a channel number. Every case must have the same channels ``0 .. n - 1`` (``n`` =
    ``channels`` when given). Raises DataError for a folder with no scans, a missing channel or
    mixed channel counts."""
    if not folder.is_dir():
        raise DataError(folder, "not a folder")
    files = sorted(path for path in folder.iterdir() if not path.name.startswith(".")
                   and _ending(path.name, endings) and (path.is_file() or path.is_dir()))
    if not files:
        raise DataError(folder, f"folder holds no readable scans ({', '.join(endings)})")
    stems = {path: path.name[:-len(_ending(path.name, endings))] for path in files}
    numbered = {path: _CHANNEL.match(stem) for path, stem in stems.items()}
    if not any(numbered.values()):
        cases = {stem: [path] for path, stem in stems.items()}
        return _check_channel_counts(folder, cases, channels)
    plain = [path.name for path, match in numbered.items() if match is None]
    if plain:
        raise DataError(folder / plain[0], "has no channel number (_0000) while other scans in the folder do")
    grouped: dict[str, dict[int, Path]] = {}
    for path, match in numbered.items():
        grouped.setdefault(match["case"], {})[int(match["channel"])] = path
    cases = {}
    for case, by_channel in grouped.items():
        wanted = range(channels or max(by_channel) + 1)
        missing = [index for index in wanted if index not in by_channel]
        if missing:
            raise DataError(folder, f"case {case!r} misses channel {missing[0]:04d} "
                                    f"(found {', '.join(path.name for path in by_channel.values())})")
        cases[case] = [by_channel[index] for index in sorted(by_channel)]
    return _check_channel_counts(folder, cases, channels)


def _check_channel_counts(folder: Path, cases: dict[str, list[Path]], channels: int | None) -> dict[str, list[Path]]:
    counts = {len(paths) for paths in cases.values()}
    if len(counts) > 1:
        few = min(cases, key=lambda case: len(cases[case]))
        raise DataError(folder, f"cases have different channel counts {sorted(counts)} (case {few!r} has "
                                f"{len(cases[few])})")
    if channels is not None and counts != {channels}:
        case = next(iter(cases))
        found = len(cases[case])
        problem = "misses channels" if found < channels else "has more channels than"
        raise DataError(folder, f"case {case!r} {problem}: {found} found, {channels} expected")
    return cases


def matches(path: Path) -> bool:
    return path.is_dir() and (path / "dataset.json").is_file() and (path / "imagesTr").is_dir()


def _spec(folder: Path) -> tuple[int, list[str], str]:
    """(channels, class names in label order, file ending) from ``dataset.json``."""
    path = folder / "dataset.json"
    values = read_json(path)
    if not isinstance(values, dict):
        raise DataError(path, "must hold a JSON object")
    channel_names = values.get("channel_names", values.get("modality"))
    if not isinstance(channel_names, dict) or not channel_names:
        raise DataError(path, "needs 'channel_names' (nnU-Net v2) or 'modality' (Decathlon): {\"0\": name, ...}")
    return len(channel_names), _classes(path, values.get("labels")), values.get("file_ending", ".nii.gz")


def _classes(path: Path, labels: Any) -> list[str]:
    """Class names ordered by label value, from ``{"name": value}`` (v2) or ``{"value": "name"}``."""
    if not isinstance(labels, dict) or len(labels) < 2:
        raise DataError(path, "'labels' must map at least background and one class to label values")
    if all(isinstance(value, int) and not isinstance(value, bool) for value in labels.values()):
        by_value = {value: name for name, value in labels.items()}
    elif all(isinstance(key, str) and key.isdigit() and isinstance(value, str) for key, value in labels.items()):
        by_value = {int(key): value for key, value in labels.items()}
    else:
        raise DataError(path, "'labels' must be {name: integer} or {\"integer\": name} (region labels are "
                              "not supported)")
    if sorted(by_value) != list(range(len(by_value))):
        raise DataError(path, f"label values {sorted(by_value)} must be 0 .. {len(by_value) - 1}")
    return [by_value[value] for value in range(len(by_value))]


def _rater_folders(folder: Path) -> dict[str, Path]:
    """Rater name -> label folder: ``labelsTr_<rater>/`` siblings, or ``labelsTr/`` alone as one rater."""
    named = {path.name[len("labelsTr_"):]: path for path in sorted(folder.glob("labelsTr_*")) if path.is_dir()}
    plain = folder / "labelsTr"
    if named and plain.is_dir():
        raise DataError(plain, "found beside labelsTr_<rater>/ folders: rename it labelsTr_<rater>/ "
                               "(e.g. labelsTr_consensus) to use it as one more rater")
    if named:
        return named
    if plain.is_dir():
        return {DEFAULT_RATER: plain}
    raise DataError(folder, "holds no labelsTr/ or labelsTr_<rater>/ folder")


def to_manifest(folder: Path) -> Manifest:
    """The folder as a :class:`~proseg_pyro.data.formats.manifest.Manifest` (cases of ``imagesTr``)."""
    channels, classes, ending = _spec(folder)
    cases = channel_cases(folder / "imagesTr", (ending,), channels)
    raters = _rater_folders(folder)
    entries = []
    for case, images in cases.items():
        annotations = {rater: labels / f"{case}{ending}" for rater, labels in raters.items()
                       if (labels / f"{case}{ending}").exists()}
        entries.append({"id": case, "subject": case, "split": "", "image": images, "annotations": annotations})
    return Manifest(folder / "dataset.json", folder.name, list(raters), classes, "channels", entries)


def _read(path: Path, options: ReadOptions) -> SliceSet:
    return load_manifest(to_manifest(path), options.config, options.whole, options.store)


def _files(path: Path, options: ReadOptions) -> list[Path]:
    return [path / "dataset.json", *to_manifest(path).files()]


def _spacings(path: Path, options: ReadOptions) -> list[tuple[float, float]]:
    return training_spacings(to_manifest(path))


FORMAT = Format("nnunet", matches, _read,
                "an nnU-Net v2 / Decathlon folder (dataset.json, imagesTr, labelsTr)", _files, _spacings)
