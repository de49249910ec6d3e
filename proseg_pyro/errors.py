"""Errors the package raises on bad input; the CLI turns them into one line and exit code 2."""
from __future__ import annotations

import os


class ProSegError(Exception):
    """Base class of the errors users can act on (bad data, bad config, bad checkpoint)."""


class ConfigError(ProSegError, ValueError):
    """A hyperparameter is missing, of the wrong type or out of range."""


class DataError(ProSegError, ValueError):
    """A data file is missing, unreadable or inconsistent. The message names the file."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class CheckpointError(DataError):
    """A checkpoint is missing, corrupt, of another format version or of another method."""
