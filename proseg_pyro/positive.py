"""Positive parameters stored unconstrained: the inverse of ``softplus``."""
from __future__ import annotations

import torch


def inverse_softplus(value: torch.Tensor | float) -> torch.Tensor:
    """``x`` with ``softplus(x) = value`` (> 0), elementwise, stable for large and small values; a
    Python number is computed in float64 (a 0-d tensor)."""
    value = value if torch.is_tensor(value) else torch.tensor(value, dtype=torch.float64)
    return value + torch.log(-torch.expm1(-value))
