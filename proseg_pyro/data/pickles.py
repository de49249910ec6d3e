"""A restricted unpickler for untrusted pickles of numpy arrays (plain or the one pickle in a zip)."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import DataError
from ..limits import check_archive_size, require_regular_file


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as pickle protocols 0-2 use it to store bytes (latin-1 only)."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing to encode {type(text).__name__} as {encoding!r}")
    return text.encode("latin1")


def _numpy_reconstructors() -> dict[tuple[str, str], Any]:
    """The globals a pickle of numpy arrays needs (numpy 1.x and 2.x module names), nothing else."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_bytes}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # pickle protocol 5
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers, strings, numbers and numpy arrays; refuses every other global."""

    allowed = _numpy_reconstructors()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def read_pickle(path: str | os.PathLike) -> Any:
    """Unpickle a ``.pkl``/``.pickle`` file, or the one pickle inside a ``.zip``, with the restricted
    unpickler (a pickle that needs any other global raises DataError before running any code)."""
    path = require_regular_file(path)
    check_archive_size(path)
    try:
        if path.suffix.lower() != ".zip":
            with open(path, "rb") as handle:
                return _unpickle(handle, path)
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist()
                       if m.lower().endswith((".pkl", ".pickle")) and not m.startswith("__MACOSX")]
            if len(members) != 1:
                raise DataError(path, f"zip holds {len(members)} pickles (.pkl/.pickle); expected one")
            with archive.open(members[0]) as handle:
                return _unpickle(handle, path)
    except zipfile.BadZipFile:
        raise DataError(path, "not a valid zip file") from None


def _unpickle(handle: IO[bytes], path: Path) -> Any:
    try:
        return _ArrayUnpickler(handle).load()
    except pickle.UnpicklingError as err:
        raise DataError(path, f"unsafe or corrupt pickle ({err})") from None
    except Exception as err:  # untrusted bytes: any failure of the unpickler is bad input
        raise DataError(path, f"not a readable pickle ({type(err).__name__}: {err})") from None
