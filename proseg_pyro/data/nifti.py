"""A scan of a NIfTI file's stored voxels for NaN and Inf.

SimpleITK's NIfTI reader replaces NaN voxels by 0, so a NaN can only be seen in the file's own
bytes. The voxels are read in chunks: the scan needs little memory whatever the image's size.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# NIfTI datatype codes of real floating-point voxels, and their numpy types
_FLOAT_TYPES = {16: "f4", 64: "f8"}
_CHUNK = 1 << 23


def is_nifti(path: str | os.PathLike) -> bool:
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def nifti_has_nonfinite(path: str | os.PathLike) -> bool:
    """Whether the NIfTI-1 or NIfTI-2 file at ``path`` stores a NaN or Inf voxel (or scaling).
    Files whose header this cannot parse are left to SimpleITK; damaged data raises DataError."""
    path = Path(path)
    try:
        return _scan(path)
    except (EOFError, OSError, ValueError, zlib.error, struct.error) as err:
        raise DataError(path, f"damaged NIfTI data ({err})") from None


def _scan(path: Path) -> bool:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        header = handle.read(540)
        layout = _layout(header)
        if layout is None:
            return False
        order, datatype, offset, scaling = layout
        if not all(np.isfinite(scaling)):
            return True
        if datatype not in _FLOAT_TYPES:
            return False
        dtype = np.dtype(order + _FLOAT_TYPES[datatype])
        handle.seek(offset)
        rest = b""
        while chunk := handle.read(_CHUNK):
            chunk = rest + chunk
            usable = len(chunk) - len(chunk) % dtype.itemsize
            if not np.isfinite(np.frombuffer(chunk[:usable], dtype)).all():
                return True
            rest = chunk[usable:]
    return False


def _layout(header: bytes) -> tuple[str, int, int, tuple[float, float]] | None:
    """(byte order, datatype code, voxel offset, (scl_slope, scl_inter)) of a NIfTI header."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:  # NIfTI-1
            datatype = struct.unpack(order + "h", header[70:72])[0]
            offset = int(struct.unpack(order + "f", header[108:112])[0])
            return order, datatype, offset, struct.unpack(order + "ff", header[112:120])
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:  # NIfTI-2
            datatype = struct.unpack(order + "h", header[12:14])[0]
            offset = struct.unpack(order + "q", header[168:176])[0]
            return order, datatype, offset, struct.unpack(order + "dd", header[176:192])
    return None
