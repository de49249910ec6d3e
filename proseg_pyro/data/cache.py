"""The cache of preprocessed slices: one slice store per source, keyed by its files' content, the
reader options and the preprocessing config (never written into the dataset's folder)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

from ..config import ProSegConfig
from ..errors import DataError
from ..limits import require_regular_file
from .slice_store import open_store
from .slices import SliceSet

CACHE_VERSION = 5


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/proseg-pyro``, else ``~/.cache/proseg-pyro``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "proseg-pyro"


def _content_hash(file: Path) -> str | None:
    """BLAKE2b of a file's bytes (None if it is missing: reading it will then report the problem)."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(require_regular_file(file), "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except DataError:
        return None
    return digest.hexdigest()


def _fingerprint(files: Iterable[Path]) -> list[list[Any]]:
    """(path, content hash) of every file; folders (DICOM series) expand to their files."""
    rows = []
    for file in files:
        for item in sorted(p for p in file.rglob("*") if p.is_file()) if file.is_dir() else [file]:
            rows.append([str(item.absolute()), _content_hash(item)])
    return rows


def _cache_folder(folder: Path) -> Path:
    """``folder`` after refusing a symlinked cache folder: one planted by someone else would send
    the cache's writes and deletions elsewhere."""
    if folder.is_symlink():
        raise DataError(folder, "the cache folder is a symlink; give a real folder (--cache-dir) or --no-cache")
    return folder


def cached(source: Path, files: list[Path], options: dict[str, Any], config: ProSegConfig,
            build: Callable[[Path | None], SliceSet], folder: Path) -> SliceSet:
    """``build(store)``'s slices, written into a slice store in ``folder`` and read back memory-mapped,
    or the store an earlier call with the same inputs wrote there.

    The key hashes every file's path and content, the reader options and the preprocessing config,
    so an edited file is read afresh whatever its size and time stamp. A store is written under a
    temporary name and renamed when complete; a damaged one is rebuilt. Older entries of the same
    source are removed when a new one is written; a cache that cannot be written is warned about
    (the slices are then read into memory).
    """
    key_parts = {"version": CACHE_VERSION, "options": options, "files": _fingerprint(files),
                 "config": [config.image_size, config.resize, config.intensity, config.spacing]}
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()
    prefix = f"{source.name}-{hashlib.sha256(str(source.absolute()).encode()).hexdigest()[:8]}"
    entry = _cache_folder(folder) / f"{prefix}-{key[:24]}"
    slices = _read_cache(entry)
    if slices is not None:
        return slices
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".partial-{entry.name}-", dir=folder))
    except OSError as err:
        warnings.warn(f"could not write a cache for {source} in {folder}: {err.strerror or err}")
        return build(None)
    try:
        build(partial)
        _remove_entry(entry)  # a damaged entry of the same key
        partial.rename(entry)
    finally:
        _remove_entry(partial)
    for stale in folder.glob(f"{prefix}-*"):
        if stale.name != entry.name:
            _remove_entry(stale)
    return open_store(entry)


def _remove_entry(path: Path) -> None:
    """Remove a cache entry (a store folder; a symlink or file planted in its place is unlinked, not followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _read_cache(entry: Path) -> SliceSet | None:
    """The store in ``entry`` memory-mapped, or None when there is none or it is damaged (rebuild)."""
    if entry.is_symlink() or not entry.is_dir():
        return None
    try:
        return open_store(entry)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or from another version: rebuild
