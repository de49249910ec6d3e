"""Training batches assembled on the fly: slices drawn with replacement from arrays that may be
memory-mapped, cut to the model's size around foreground or at random, and only then converted to
tensors on the device (float32 images, long labels)."""
from __future__ import annotations

import numpy as np
import torch

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # images (S, C, H, W), labels (S, R, H, W), mask (S, R)


def to_device(images: np.ndarray, labels: np.ndarray, mask: np.ndarray, device: torch.device | str
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Arrays of a batch as tensors on ``device``: ``images`` (N, C, H, W) float32, ``labels``
    (N, R, H, W) long (converted there from their compact dtype) and ``mask`` (N, R) bool. The
    arrays are copied first (they may be read-only maps of the slice cache)."""
    tensor = lambda array: torch.from_numpy(np.array(array)).to(device)  # noqa: E731
    return tensor(images).float(), tensor(labels).long(), tensor(mask).bool()


def draw_batch(data: Arrays, batch_size: int, size: int, foreground_share: float, generator: torch.Generator,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batch_size`` slices drawn uniformly with replacement from ``data`` = (images (S, C, H, W),
    labels (S, R, H, W), mask (S, R)), each cut to a ``size`` x ``size`` patch where the slices are
    larger: with probability ``foreground_share`` a patch centred (with a random shift of up to a
    quarter patch) on a foreground pixel of a randomly chosen rater who annotated the slice, else
    a patch at a random place, as nnU-Net samples. Slices of at most ``size`` are returned whole.
    Only the drawn slices are read (``data`` may be memory-mapped).

    Returns tensors on ``device`` (:func:`to_device`): images (N, C, h, w), labels (N, R, h, w) and
    mask (N, R) with h, w = min(H, size), min(W, size).
    """
    images, labels, mask = data
    index = torch.randint(len(images), (batch_size,), generator=generator).numpy()
    height, width = images.shape[-2:]
    if height <= size and width <= size:
        return to_device(images[index], labels[index], mask[index], device)
    h, w = min(height, size), min(width, size)
    patches_x, patches_y = [], []
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
        patches_x.append(images[item, :, top:top + h, left:left + w])
        patches_y.append(labels[item, :, top:top + h, left:left + w])
    return to_device(np.stack(patches_x), np.stack(patches_y), mask[index], device)


def _foreground_pixel(labels: np.ndarray, mask: np.ndarray, generator: torch.Generator) -> tuple[int, int] | None:
    """A uniformly drawn foreground pixel (row, column) of a uniformly drawn annotating rater with
    any foreground in ``labels`` (R, H, W); None when no rater marked any."""
    labels = np.asarray(labels)
    raters = [r for r in range(len(labels)) if bool(mask[r]) and bool(labels[r].any())]
    if not raters:
        return None
    rater = raters[int(torch.randint(len(raters), (1,), generator=generator))]
    pixels = np.argwhere(labels[rater] > 0)
    row, column = pixels[int(torch.randint(len(pixels), (1,), generator=generator))].tolist()
    return row, column
