"""Helpers shared by the reliability tests (crash safety, determinism, bad input, fuzzing)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny models on one thread: extra threads only contend on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def same_weights(first: dict, second: dict) -> bool:
    """Whether two checkpoint dicts hold identical ``model`` and ``guide`` tensors."""
    return all(first[part].keys() == second[part].keys()
               and all(torch.equal(value, second[part][name]) for name, value in first[part].items())
               for part in ("model", "guide"))


class Exploit:
    """Unpickling this creates the file ``marker``: what a malicious pickle could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))
