"""ProSeg in Pyro: probabilistic multi-rater segmentation for diversity and personalisation.

The package's entry points, as the command line uses them (imported when first used, so that
``import proseg_pyro`` stays light):

* :func:`load_dataset` (``--data``): a dataset as preprocessed slices;
* :func:`fit` (``train``): train a config's method on a training (and validation) set;
* :func:`load_checkpoint`: ``(model, guide, config)`` of a trained checkpoint of any method;
* :func:`personalised` and :func:`prior` (``sample``): samples in chosen raters' styles, and
  diverse ones, from any method's model and guide;
* :func:`image_metrics` (``evaluate``): the paper's metrics of one image's predictions.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

from .config import ProSegConfig

__version__ = "0.1.0"

# name -> (module, attribute) of the entry points imported when first used
_LAZY = {"load_dataset": ("proseg_pyro.data", "load_dataset"), "fit": ("proseg_pyro.train", "fit"),
         "personalised": ("proseg_pyro.methods", "personalised"), "prior": ("proseg_pyro.methods", "prior"),
         "image_metrics": ("proseg_pyro.metrics", "image_metrics")}
__all__ = ["ProSegConfig", "__version__", "load_checkpoint", *_LAZY]


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[Any, Any, ProSegConfig]:
    """``(model, guide, config)`` of the trained checkpoint at ``path`` (any method), in eval mode on ``device``."""
    from .checkpoint import load_checkpoint as load

    return load(path, device, method=None)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
