"""What the bench measures, free of heavy imports (the command line shows its defaults)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchSize:
    """What to measure: paper size by default (128 x 128, batch 12, 4 raters)."""

    image_size: int = 128
    batch: int = 12
    raters: int = 4
    samples: int = 50  # personalised samples per rater
    prior_samples: int = 52
    metric_images: int = 1000
    metric_samples: int = 50
    metric_chunk: int = 100  # images generated and scored at a time
    loop_images: int = 4  # images the per-pair metric loop is timed on
    fit_images: int = 48  # training set of the timed fit run (two rounds of fit_steps steps, the second timed)
    fit_steps: int = 4
    repeats: int = 5
    amp: bool = False  # also time the SVI step under bfloat16 autocast (GPU)
    large_set: int = 0  # slices of the large set trained from the memory-mapped slice cache (0: not measured)
