"""Training batches: images drawn with replacement, cut to the model's size around foreground or at random."""
from __future__ import annotations

import torch


def draw_batch(data: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_size: int, size: int,
               foreground_share: float, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batch_size`` slices drawn uniformly with replacement from ``data`` = (images (S, C, H, W),
    labels (S, R, H, W), mask (S, R)), each cut to a ``size`` x ``size`` patch where the slices are
    larger: with probability ``foreground_share`` a patch centred (with a random shift of up to a
    quarter patch) on a foreground pixel of a randomly chosen rater who annotated the slice, else
    a patch at a random place, as nnU-Net samples. Slices of at most ``size`` are returned whole.

    Returns images (N, C, h, w), labels (N, R, h, w) and mask (N, R) with h, w = min(H, size), min(W, size).
    """
    images, labels, mask = data
    index = torch.randint(len(images), (batch_size,), generator=generator)
    height, width = images.shape[-2:]
    if height <= size and width <= size:
        device_index = index.to(images.device)
        return images[device_index], labels[device_index], mask[device_index]
    h, w = min(height, size), min(width, size)
    corners = []
    for item in index.tolist():
        top = int(torch.randint(height - h + 1, (1,), generator=generator))
        left = int(torch.randint(width - w + 1, (1,), generator=generator))
        if float(torch.rand((), generator=generator)) < foreground_share:
            centre = _foreground_pixel(labels[item], mask[item], generator)
            if centre is not None:
                shift_y, shift_x = (int(torch.randint(-(s // 4), s // 4 + 1, (1,), generator=generator))
                                    for s in (h, w))
                top = min(max(centre[0] + shift_y - h // 2, 0), height - h)
                left = min(max(centre[1] + shift_x - w // 2, 0), width - w)
        corners.append((top, left))
    pick = lambda t, i, c: t[i, ..., c[0]:c[0] + h, c[1]:c[1] + w]  # noqa: E731
    return (torch.stack([pick(images, i, c) for i, c in zip(index.tolist(), corners)]),
            torch.stack([pick(labels, i, c) for i, c in zip(index.tolist(), corners)]),
            mask[index.to(mask.device)])


def _foreground_pixel(labels: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> tuple[int, int] | None:
    """A uniformly drawn foreground pixel (row, column) of a uniformly drawn annotating rater with
    any foreground in ``labels`` (R, H, W); None when no rater marked any."""
    raters = [r for r in range(len(labels)) if bool(mask[r]) and bool((labels[r] > 0).any())]
    if not raters:
        return None
    rater = raters[int(torch.randint(len(raters), (1,), generator=generator))]
    pixels = torch.nonzero(labels[rater] > 0)
    row, column = pixels[int(torch.randint(len(pixels), (1,), generator=generator))].tolist()
    return row, column
