"""Splitting many samples into chunks that fit a memory budget."""
from __future__ import annotations


def chunk_sizes(total: int, per_item: int, budget: int) -> list[int]:
    """Sizes of consecutive chunks of ``total`` items, each holding at most ``budget`` tensor
    elements when one item needs ``per_item`` (but at least one item)."""
    size = max(1, min(total, budget // max(1, per_item)))
    return [min(size, total - start) for start in range(0, total, size)]
