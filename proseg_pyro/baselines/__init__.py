"""The paper's compared methods and ablations as alternative Pyro models sharing ``networks.py``.

Each trainable method's module exports its :class:`~proseg_pyro.method_entry.Method` entry (or
entries), which :mod:`proseg_pyro.methods` lists (so ``ProSegConfig(method=NAME)`` and
``proseg-pyro train --method NAME`` select it); the training-free crowdsourcing references live in
:data:`CONSENSUS` (see :mod:`.crowd`).
"""
from __future__ import annotations

from .crowd import CONSENSUS

__all__ = ["CONSENSUS"]
