"""Checks made before a file is read or an array allocated: regular files only, and sizes (from
headers, archive directories and dataset shapes) held to a memory budget.

The budget is half of the memory available when the check runs, or the bytes named by the
environment variable ``PROSEG_PYRO_MEMORY_BUDGET``.
"""
from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

from .errors import DataError, ProSegError

BUDGET_VARIABLE = "PROSEG_PYRO_MEMORY_BUDGET"


def memory_budget() -> int:
    """Bytes one command may allocate for a single input or result."""
    override = os.environ.get(BUDGET_VARIABLE)
    if override:
        try:
            return int(override)
        except ValueError:
            raise ProSegError(f"{BUDGET_VARIABLE}={override!r}: not a number of bytes") from None
    return _available_memory() // 2


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _size(count: int) -> str:
    return f"{count / 2 ** 30:.2f} GiB" if count >= 2 ** 30 else f"{count / 2 ** 20:.1f} MiB"


def require_memory(count: int, path: str | os.PathLike | None, what: str) -> None:
    """Raise DataError naming ``path`` when ``what`` needs ``count`` bytes, more than the budget."""
    budget = memory_budget()
    if count > budget:
        raise DataError(path, f"{what} would need {_size(count)} of memory, more than the budget of {_size(budget)} "
                              f"(set {BUDGET_VARIABLE} to allow more)")


def require_regular_file(path: str | os.PathLike, folders: bool = False) -> Path:
    """``path`` after checking it is a regular file (or, with ``folders``, a folder): a FIFO, device
    or socket would block or never end, a symlink loop cannot be read."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except OSError as err:
        raise DataError(path, f"cannot read it ({err.strerror or err})") from None
    if stat.S_ISREG(mode) or (folders and stat.S_ISDIR(mode)):
        return path
    kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
    raise DataError(path, f"{kind}; expected a file")


def check_archive_size(path: str | os.PathLike, error: type[DataError] = DataError) -> None:
    """Refuse a zip archive (a checkpoint, a zipped pickle) whose members unpack beyond the budget,
    before any of them is unpacked, raising ``error``. Other files pass unchanged."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise error(path, f"not a readable zip archive ({err})") from None
    try:
        require_memory(unpacked, path, "unpacking the archive")
    except DataError as err:
        raise error(path, err.problem) from None


def require_sampling_memory(samples: int, styles: int, scan_shape: tuple[int, ...], classes: int, every_sample: bool,
                            option: str) -> None:
    """Refuse ``samples`` samples of ``styles`` styles of a scan of ``scan_shape`` (Z, C, H, W) when
    the results kept on the scan's grid exceed the budget: mean class probabilities (float32),
    foreground counts per sample (int64) and, with ``every_sample``, every sample's mask (uint8)
    and its output file's name (the model's passes themselves run in bounded chunks)."""
    depth, _, height, width = scan_shape
    voxels = depth * height * width
    needed = 4 * voxels * styles * classes + samples * styles * 8 + (samples * (voxels + 512) if every_sample else 0)
    require_memory(needed, option, f"{samples} samples of {styles} style(s) on a grid of {voxels} voxels")


def require_prediction_memory(samples: int, images: int, raters: int, classes: int, pixels: int,
                              option: str, batch: int = 8) -> None:
    """Refuse ``samples`` samples per image when what is kept of them exceeds the budget: the prior
    samples of all ``images`` (float32) and one batch's personalised class probabilities."""
    needed = 4 * samples * pixels * (images + batch * raters * classes)
    require_memory(needed, option, f"{samples} samples of {images} images of {pixels} pixels")
