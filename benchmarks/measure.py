"""Timing and peak memory: interleaved repeats with medians, synchronised on a GPU.

Peak memory is the process's resident set (RSS) high-water mark on a CPU, reset before each
measurement through ``/proc/self/clear_refs`` after handing freed heap back to the system, and
``torch.cuda.max_memory_allocated`` on a GPU.
"""
from __future__ import annotations

import ctypes
import gc
import re
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

_STATUS = Path("/proc/self/status")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of ``function()``, including the device work it queued."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(cases: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each case over ``repeats`` rounds, each round running every case once in turn
    (after ``warmup`` untimed rounds), so that load changes hit all cases alike."""
    for _ in range(warmup):
        for function in cases.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, function in cases.items():
            times[name].append(timed(function, device))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def _status_bytes(key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.M).group(1)) * 1024


def _reset_cpu_peak() -> bool:
    """Return freed heap to the system and restart the RSS high-water mark; False where unsupported."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory(function: Callable[[], object], device: torch.device) -> int | None:
    """Peak bytes while ``function()`` runs: process RSS on a CPU (None where it cannot be
    measured), allocated tensor memory on a GPU."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        function()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    if not _reset_cpu_peak():
        return None
    function()
    return _status_bytes("VmHWM")
