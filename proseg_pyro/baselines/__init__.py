"""The paper's compared methods and ablations as alternative Pyro models sharing ``networks.py``.

Importing this package registers every trainable method with :mod:`proseg_pyro.methods` (so
``ProSegConfig(method=NAME)`` and ``proseg-pyro train --method NAME`` select it); the training-free
crowdsourcing references live in :data:`CONSENSUS` (see :mod:`.crowd`).
"""
from __future__ import annotations

from .. import methods
from . import ablations, confusion, dpersona, pionono, pooled_unet, prob_unet, tab, unet
from .crowd import CONSENSUS

for _method in (*ablations.METHODS, unet.METHOD, pooled_unet.METHOD, prob_unet.METHOD, dpersona.METHOD,
                *confusion.METHODS, pionono.METHOD, tab.METHOD):
    methods.register(_method)

__all__ = ["CONSENSUS"]
