"""Names the command line offers in its help, kept free of heavy imports so that ``--help`` is fast:
the trainable methods (the command line's copy of :func:`proseg_pyro.methods.trainable`, which a
test holds equal to it), the consensus references and the tau embeddings of the figures."""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

# Installed packages add methods under this entry-point group: ``name = module:METHOD``, a
# :class:`~proseg_pyro.method_entry.Method` called ``name``, loaded only when a run uses it.
PLUGIN_GROUP = "proseg_pyro.methods"


@lru_cache(maxsize=1)
def plugin_method_names() -> tuple[str, ...]:
    """The names of the methods installed packages offer under :data:`PLUGIN_GROUP` (none loaded),
    read once per process (``plugin_method_names.cache_clear()`` reads them again)."""
    return tuple(sorted({point.name for point in entry_points(group=PLUGIN_GROUP)}))


BUILTIN_METHOD_NAMES = ("proseg", "proseg_no_tau", "proseg_no_z", "unet", "unet_pooled", "prob_unet", "dpersona",
                        "cm_global", "cm_pixel", "pionono", "tab")
METHOD_NAMES = BUILTIN_METHOD_NAMES + tuple(name for name in plugin_method_names() if name not in BUILTIN_METHOD_NAMES)
CONSENSUS_NAMES = ("majority_vote", "staple")  # the keys of proseg_pyro.baselines.CONSENSUS
EMBEDDINGS = ("pca", "tsne")
