"""Training batches: drawn with replacement, cut to the model's size, part of them around foreground."""
from __future__ import annotations

import numpy as np
import torch

from proseg_pyro.data.patches import draw_batch


def _data(size: int = 64, lesion: tuple[int, int] = (50, 55)):
    images = np.arange(3 * size * size, dtype=np.float32).reshape(3, 1, size, size)
    labels = np.zeros((3, 2, size, size), dtype=np.uint8)
    labels[:, 1, lesion[0]:lesion[0] + 3, lesion[1]:lesion[1] + 3] = 1  # rater 1 marks a 3x3 spot
    mask = np.ones((3, 2), dtype=bool)
    return images, labels, mask


def test_small_slices_are_drawn_whole_with_replacement():
    images, labels, mask = _data(16)
    batch = draw_batch((images, labels, mask), 8, 16, 0.5, torch.Generator().manual_seed(0))
    assert batch[0].shape == (8, 1, 16, 16) and batch[1].shape == (8, 2, 16, 16) and batch[2].shape == (8, 2)
    assert (batch[0].dtype, batch[1].dtype, batch[2].dtype) == (torch.float32, torch.long, torch.bool)
    drawn = {int(image[0, 0, 0]) // 256 for image in batch[0]}
    assert drawn <= {0, 1, 2} and len(drawn) < 8  # 8 draws of 3 slices repeat some


def test_patches_keep_image_and_labels_aligned():
    images, labels, mask = _data()
    patch_images, patch_labels, _ = draw_batch((images, labels, mask), 16, 16, 0.0, torch.Generator().manual_seed(1))
    assert patch_images.shape == (16, 1, 16, 16)
    for image, label in zip(patch_images, patch_labels):
        flat = int(image[0, 0, 0]) % (64 * 64)
        top, left = divmod(flat, 64)
        full = labels[0, :, top:top + 16, left:left + 16]
        assert torch.equal(label, torch.from_numpy(full).long())


def test_foreground_share_centres_patches_on_a_raters_foreground():
    images, labels, mask = _data()
    generator = torch.Generator().manual_seed(2)
    always = draw_batch((images, labels, mask), 40, 16, 1.0, generator)[1]
    never = draw_batch((images, labels, mask), 40, 16, 0.0, generator)[1]
    hits = lambda labels: (labels[:, 1].sum((-2, -1)) > 0).float().mean()  # noqa: E731
    assert hits(always) == 1.0  # the spot lies in every patch centred on it (shift <= a quarter patch)
    assert hits(never) < 0.3  # a 3x3 spot in a 64x64 slice: few random 16x16 patches hold it
