"""Names the command line offers in its help, kept free of heavy imports so that ``--help`` is fast:
the trainable methods (the command line's copy of :func:`proseg_pyro.methods.trainable`, which a
test holds equal to it), the consensus references and the tau embeddings of the figures."""
from __future__ import annotations

METHOD_NAMES = ("proseg", "proseg_no_tau", "proseg_no_z", "unet", "unet_pooled", "prob_unet", "dpersona", "cm_global",
                "cm_pixel", "pionono", "tab")
CONSENSUS_NAMES = ("majority_vote", "staple")  # the keys of proseg_pyro.baselines.CONSENSUS
EMBEDDINGS = ("pca", "tsne")
