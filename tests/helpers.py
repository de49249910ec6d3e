"""Helpers shared by the tests: one-thread runs of tiny models, weight comparison, a planted pickle."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pytest
import torch


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and extra threads only contend on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread():
    """A module's tests on one thread (:func:`single_thread`)."""
    with single_thread():
        yield


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
