"""The compared methods' tests run their tiny models on one thread (extra threads only contend)."""
from __future__ import annotations

import pytest

from ..helpers import single_thread


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    with single_thread():
        yield
