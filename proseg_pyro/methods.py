"""The registry of trainable methods: ProSeg and the compared methods share one loop and one evaluation.

:data:`METHODS` lists ProSeg and every entry the compared methods' modules export; :func:`register`
adds another (an entry is a :class:`~proseg_pyro.method_entry.Method`), after which
``ProSegConfig(method=NAME)`` selects it. An installed package offers a method to every command,
the command line's included, as an entry point of the group ``proseg_pyro.methods``
(``name = module:METHOD``), loaded when a run first uses it. :func:`personalised` and :func:`prior`
sample from a trained model and guide of any method, through the method its config names.
"""
from __future__ import annotations

from importlib.metadata import entry_points

import torch
from pyro.nn import PyroModule

from . import inference
from .baselines import ablations, confusion, dpersona, pionono, pooled_unet, prob_unet, tab, unet
from .errors import ConfigError
from .guide import ProSegGuide
from .method_entry import Method
from .model import ProSegModel
from .names import PLUGIN_GROUP, plugin_method_names

PROSEG = Method("proseg", lambda config: (ProSegModel(config), ProSegGuide(config)),
                inference.personalised, inference.prior,
                "Probabilistic modeling of multi-rater medical image segmentation for diversity and personalization")

METHODS: dict[str, Method] = {method.name: method for method in (
    PROSEG, *ablations.METHODS, unet.METHOD, pooled_unet.METHOD, prob_unet.METHOD, dpersona.METHOD,
    *confusion.METHODS, pionono.METHOD, tab.METHOD)}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (replacing one of the same name); returns it."""
    METHODS[method.name] = method
    return method


def trainable() -> tuple[str, ...]:
    """The names of the registered methods, ProSeg first, in the order they were registered, then
    those of installed plugins not loaded yet."""
    return tuple(METHODS) + tuple(name for name in plugin_method_names() if name not in METHODS)


def get_method(name: str) -> Method:
    """The registered method ``name``, loading an installed plugin's on first use."""
    if name in METHODS:
        return METHODS[name]
    if name in plugin_method_names():
        return register(_load_plugin(name))
    raise ConfigError(f"config: unknown method {name!r}; choose from {sorted(trainable())}")


def _load_plugin(name: str) -> Method:
    """The :class:`Method` the entry point ``name`` of :data:`~proseg_pyro.names.PLUGIN_GROUP` names;
    a plugin that fails to import, or names something else, is a :class:`ConfigError`."""
    point = next(point for point in entry_points(group=PLUGIN_GROUP) if point.name == name)
    try:
        method = point.load()
    except Exception as error:  # any failure inside a third-party module: reported, not a traceback
        raise ConfigError(f"method {name!r}: its plugin {point.value!r} did not load: "
                          f"{type(error).__name__}: {error}") from error
    if not isinstance(method, Method) or method.name != name:
        raise ConfigError(f"method {name!r}: its plugin {point.value!r} is not a Method named {name!r}")
    return method


def personalised(model: PyroModule, guide: PyroModule, x: torch.Tensor, raters, num_samples: int) -> torch.Tensor:
    """Samples in the style of each of ``raters`` (N rater indices) for images ``x`` (B, C, H, W), by
    the method of ``model.config``: foreground probabilities (S, B, N, H, W)."""
    return get_method(model.config.method).personalised(model, guide, x, list(raters), num_samples)


def prior(model: PyroModule, guide: PyroModule, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Diverse samples for images ``x`` (B, C, H, W), by the method of ``model.config``: foreground
    probabilities (S, B, H, W)."""
    return get_method(model.config.method).prior(model, guide, x, num_samples)
