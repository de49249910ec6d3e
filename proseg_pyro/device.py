"""Choosing the torch device from a user's ``auto|cpu|cuda`` string."""
from __future__ import annotations

import torch

from .errors import ProSegError


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available; ``"cuda"`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ProSegError(f"--device {name}: no CUDA device is available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ProSegError(f"--device {name}: not a device name (use auto, cpu or cuda)") from None
