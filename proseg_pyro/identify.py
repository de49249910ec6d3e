"""Which known rater drew an annotation: p(r | x, y) proportional to p(r) p(y | x, r).

The evidence of each rater is a Monte Carlo estimate under the trained guide::

    p(y | x, r) = E_{tau ~ q(tau | r), z ~ q(z | x)} [ p(y | tau, z) ]
                ~ mean_s p(y | tau_s, z_s)          (log-mean-exp over S samples)

with all samples and raters of an image batch in one vectorised pass (chunked over samples), and
the same z draws shared by every rater so that raters are compared on common noise.
"""
from __future__ import annotations

import math

import torch

from .guide import ProSegGuide
from .chunks import chunk_sizes
from .model import ProSegModel


@torch.no_grad()
def log_evidence(model: ProSegModel, guide: ProSegGuide, x: torch.Tensor, y: torch.Tensor, raters: list[int],
                 num_samples: int = 64, max_elements: int = 2 ** 26) -> torch.Tensor:
    """log p(y_b | x_b, r) for ``x`` (B, C, H, W), ``y`` (B, H, W) long and each of ``raters``: (B, N)."""
    rater_ids = torch.as_tensor(raters, dtype=torch.long, device=x.device)
    tau_q = guide.tau_dist(rater_ids)  # batch (N,)
    style_offset = model.style_offsets(rater_ids)  # (N, hidden) or None
    z_q = guide.z_dist(x, rater_ids)  # batch (B, 1) shared head, or (B, N) per-rater heads
    labels = y.to(x.dtype)[:, None]  # (B, 1, H, W)
    c = model.config
    per_sample = x.shape[0] * len(raters) * (c.predictor_hidden + c.num_classes) * math.prod(x.shape[-2:])
    log_sums = []
    for size in chunk_sizes(num_samples, per_sample, max_elements):
        tau = tau_q.sample((size, x.shape[0]))  # (s, B, N, T)
        z = z_q.sample((size,))  # (s, B, 1 or N, Cz, H, W)
        log_sums.append(model.y_likelihood(tau, z, style_offset).log_prob(labels).logsumexp(0))  # (B, N)
    return torch.stack(log_sums).logsumexp(0) - math.log(num_samples)


def posterior(evidence: torch.Tensor, joint: bool = False, log_prior: torch.Tensor | None = None) -> torch.Tensor:
    """p(r | x, y) from ``evidence`` (B, N) log p(y_b | x_b, r) and a prior over the N raters
    (uniform when None): per image (B, N), or with ``joint`` one posterior (N,) for all B slices
    together (slices of one annotated scan are independent given the rater)."""
    evidence = evidence.sum(0) if joint else evidence
    return (evidence + (0.0 if log_prior is None else log_prior)).softmax(-1)
