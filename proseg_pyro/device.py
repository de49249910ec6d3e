"""Choosing the torch device from a user's ``auto|cpu|cuda`` string."""
from __future__ import annotations

import re

import torch

from .errors import ProSegError


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available; ``"cuda"`` without a GPU, or any other device type
    (the models are tested on CPU and CUDA only), is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ProSegError(f"--device {name}: not a supported device (use auto, cpu, cuda or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ProSegError(f"--device {name}: no CUDA device is available on this machine")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ProSegError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
