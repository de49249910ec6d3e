"""Checkpoints: a dict of plain tensors and primitives, written atomically, read with weights_only."""
from __future__ import annotations

import os
import re
from typing import Any

import torch

from .config import ProSegConfig
from .errors import CheckpointError, ConfigError, DataError
from .io_utils import atomic_path
from .limits import check_archive_size, require_regular_file
from .methods import get_method
from .networks import slice_of_features

FORMAT = "proseg-pyro/2"
# /1 wired per-rater z heads as a grouped conv over interleaved copies of the features: head g read
# features g F / R .. (g + 1) F / R, some twice. Its checkpoints load with the weights summed per
# feature (:func:`untangle_heads`), which gives the same function in today's wiring.
EARLIER_FORMAT = "proseg-pyro/1"
HEADS_KEY = "z_heads.conv.weight"


def save_checkpoint(path: str | os.PathLike, **content: Any) -> None:
    """Write ``content`` (plus the format tag) to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **content}, tmp)


def read_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict at ``path``, loaded with ``weights_only=True`` and checked for its format."""
    if not os.path.exists(path):
        raise CheckpointError(path, "checkpoint file not found")
    try:
        require_regular_file(path)
    except DataError as err:
        raise CheckpointError(path, err.problem) from None
    check_archive_size(path, CheckpointError)
    try:
        content = torch.load(path, map_location=device, weights_only=True)
    except (MemoryError, RecursionError):
        raise CheckpointError(path, "not a loadable checkpoint (too large or too deeply nested)") from None
    except Exception as err:  # weights_only runs no code: any failure means damaged or foreign bytes
        raise CheckpointError(path, f"not a loadable checkpoint ({_load_failure(err)})") from None
    if not isinstance(content, dict) or content.get("format") not in (FORMAT, EARLIER_FORMAT):
        found = content.get("format") if isinstance(content, dict) else type(content).__name__
        raise CheckpointError(path, f"checkpoint format {found!r} is not {FORMAT!r}")
    for key in ("config", "model", "guide", "method"):
        if key not in content:
            raise CheckpointError(path, f"checkpoint misses {key!r}")
    if content["format"] == EARLIER_FORMAT:
        content = _from_earlier_format(content, path)
    return content


def untangle_heads(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """The 1x1 weights (R * 2 Cz, F, 1, 1) of R per-rater heads that each read all F features, from
    those of the earlier grouped wiring, whose head g read input j as feature (g F + j) // R."""
    blocks = weight.reshape(heads, -1, weight.shape[1])  # (R, 2 Cz, F): head, output, input
    reads = slice_of_features(heads, weight.shape[1], heads).to(weight.device)
    untangled = torch.zeros_like(blocks)
    for head in range(heads):
        untangled[head].index_add_(1, reads[head], blocks[head])
    return untangled.reshape(weight.shape)


def _from_earlier_format(content: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """``content`` of an earlier-format checkpoint in today's format (see ``EARLIER_FORMAT``)."""
    guide = content["guide"]
    weight = guide.get(HEADS_KEY) if isinstance(guide, dict) else None
    if torch.is_tensor(weight) and weight.ndim == 4:
        config = config_of(content, path)
        heads = weight.shape[0] // (2 * config.z_channels)
        if heads > 1:
            guide = {**guide, HEADS_KEY: untangle_heads(weight, heads)}
    return {**content, "guide": guide, "format": FORMAT}


def _load_failure(err: Exception) -> str:
    """Why ``torch.load`` failed, in one line: the type it refused when there is one, and never
    torch's advice to load the file unsafely."""
    text = str(err).strip()
    refused = re.search(r"GLOBAL\s+(\S+)", text)
    if refused:
        return f"refused type {refused.group(1)}: a checkpoint may hold only tensors and plain values"
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", text)
    line = unpickler.group(1) if unpickler else (text.splitlines()[0] if text else type(err).__name__)
    return "refused by the safe loader" if "weights_only" in line else line


def config_of(content: dict[str, Any], path: str | os.PathLike) -> ProSegConfig:
    try:
        return ProSegConfig.from_dict(content["config"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(path, f"invalid config in checkpoint ({err})") from None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", method: str | None = "proseg"):
    """Rebuild ``(model, guide, config)`` of a trained checkpoint, in eval mode on ``device``.

    ``method`` is the method the caller expects (``None``: whichever the checkpoint holds).
    """
    content = read_checkpoint(path, device)
    if method is not None and content["method"] != method:
        raise CheckpointError(path, f"checkpoint holds method {content['method']!r}, not {method!r}")
    config = config_of(content, path)
    try:
        build = get_method(content["method"]).build
    except ConfigError as err:
        raise CheckpointError(path, f"checkpoint of an unknown method ({err})") from None
    model, guide = build(config)
    try:
        model.load_state_dict(content["model"])
        guide.load_state_dict(content["guide"])
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(path, f"weights do not fit the config ({str(err).splitlines()[0]})") from None
    for part in ("model", "guide"):
        broken = [name for name, tensor in content[part].items()
                  if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all()]
        if broken:
            raise CheckpointError(path, f"{part} weights {broken[:3]} hold NaN or Inf values")
    return model.to(device).eval(), guide.to(device).eval(), config
