"""Output locations, settled before any work starts: earlier results are not replaced unless asked,
every output folder is created and probed for writing, and one process at a time writes a folder."""
from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import ProSegError

LOCK_NAME = ".lock"
PARTIAL_PREFIX = ".partial-"  # the temporary names of io_utils.atomic_path


class OutputError(ProSegError):
    """An output cannot be written where asked (it exists, its folder is not writable, or another
    process is writing there)."""


def prepare_outputs(paths: Iterable[str | os.PathLike | None], force: bool) -> None:
    """Before any work: refuse an existing output unless ``force``, create each output's folder and
    probe that it takes a file of the output's name (through the temporary name an atomic write
    uses, so a read-only folder or a name too long fails now), and remove leftovers of interrupted
    writes of these outputs. ``None`` entries (outputs not asked for) are skipped."""
    longest: dict[Path, str] = {}
    for path in (Path(path) for path in paths if path is not None):
        try:
            exists, folder = path.exists() or path.is_symlink(), path.is_dir()
        except OSError as err:  # a name too long, a loop in its folders
            raise OutputError(f"{path}: cannot write there ({err.strerror or err})") from None
        if exists and not force:
            raise OutputError(f"{path}: already exists (use --force to overwrite)")
        if folder:
            raise OutputError(f"{path}: is a folder; expected a file name")
        if len(path.name) > len(longest.get(path.parent, "")):
            longest[path.parent] = path.name
        remove_partials(path.parent, path.name)
    for folder, name in longest.items():
        probe_folder(folder, name)


def probe_folder(folder: str | os.PathLike, name: str = "probe") -> None:
    """Create ``folder`` and check a file named like ``name`` can be written in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{folder}: cannot create the output folder ({err.strerror or err})") from None
    try:
        handle, probe = tempfile.mkstemp(prefix=PARTIAL_PREFIX, suffix=f"-{name}", dir=folder)
    except OSError as err:
        raise OutputError(f"{folder / name}: cannot write there ({err.strerror or err})") from None
    os.close(handle)
    os.unlink(probe)


def remove_partials(folder: str | os.PathLike, name: str = "") -> None:
    """Delete temporary files that interrupted atomic writes left in ``folder`` (of output ``name``
    only, or all of them)."""
    pattern = f"{PARTIAL_PREFIX}*-{glob.escape(name)}" if name else f"{PARTIAL_PREFIX}*"
    for leftover in Path(folder).glob(pattern):
        with contextlib.suppress(OSError):
            leftover.unlink()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively while writing into ``folder``; a second writer is refused.

    The lock is an ``flock`` on the file, which the kernel releases when its holder exits (also on
    a crash or SIGKILL), so a lock left by a dead process never blocks. While it is held the
    folder's leftover temporary files are removed.
    """
    folder = Path(folder)
    probe_folder(folder, LOCK_NAME)
    lock = folder / LOCK_NAME
    try:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise OutputError(f"{lock}: cannot open the folder's lock ({err.strerror or err})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "?"
            raise OutputError(f"{folder}: another process (pid {holder}) is writing here; wait for it to end "
                              "or use another folder") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        remove_partials(folder)
        yield
    finally:
        os.close(handle)  # closing releases the flock


RUN_FILES = ("best.pt", "last.pt", "log.csv", "config.json")  # what a training run writes


def prepare_run(folder: str | os.PathLike, force: bool, resume: bool) -> None:
    """Settle a training run's folder (call it holding :func:`folder_lock`): ``resume`` needs a
    ``last.pt`` to continue; otherwise an earlier run there is refused, or with ``force`` removed."""
    folder = Path(folder)
    if resume:
        if not (folder / "last.pt").is_file():
            raise OutputError(f"{folder}: nothing to resume (no last.pt there); check the folder, or drop --resume "
                              "to start a new run")
        return
    existing = [name for name in RUN_FILES if (folder / name).exists()]
    if existing and not force:
        raise OutputError(f"{folder}: already holds a run ({', '.join(existing)}); use --resume to continue it, "
                          "--force to replace it, or another --out")
    for name in existing:
        (folder / name).unlink()
