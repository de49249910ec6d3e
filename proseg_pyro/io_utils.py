"""Crash-safe file writing: write to a temporary file beside the target, then rename atomically."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path in the target's folder; on success it replaces ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the target's extensions: writers such as SimpleITK pick the format by them.
    handle, tmp = tempfile.mkstemp(prefix=".partial-", suffix=f"-{target.name}", dir=target.parent)
    os.close(handle)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide outputs from other users
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write(text)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in the regular file ``path``; a missing, unreadable, non-UTF-8, invalid or too
    deeply nested file raises DataError naming it."""
    from .errors import DataError
    from .limits import require_regular_file

    path = require_regular_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text") from None
    except OSError as err:
        raise DataError(path, f"cannot read it ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise DataError(path, f"not valid JSON ({err.msg}, line {err.lineno})") from None
    except RecursionError:
        raise DataError(path, "JSON nested too deeply") from None
