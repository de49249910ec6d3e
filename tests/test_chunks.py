"""Chunks of samples under a memory budget."""
from __future__ import annotations

from proseg_pyro.chunks import chunk_sizes


def test_chunks_cover_the_total_within_the_budget():
    assert chunk_sizes(10, per_item=3, budget=9) == [3, 3, 3, 1]
    assert chunk_sizes(5, per_item=2, budget=100) == [5]
    assert chunk_sizes(3, per_item=50, budget=10) == [1, 1, 1]  # an item over the budget still goes alone
    assert chunk_sizes(0, per_item=2, budget=10) == []
    assert chunk_sizes(4, per_item=0, budget=10) == [4]
