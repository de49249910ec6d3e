"""Crowdsourcing references that need no training: ``majority_vote`` and ``staple``.

* ``majority_vote``: a pixel is foreground when more than half of the raters who annotated the
  image marked it (a tie is background).
* ``staple``: Warfield, Zou and Wells, "Simultaneous truth and performance level estimation
  (STAPLE): an algorithm for the validation of image segmentation", IEEE TMI 2004, through
  SimpleITK's ``STAPLE`` filter per image on the present raters' foreground masks, thresholded at 0.5.

Both fuse the annotations OF THE IMAGE BEING SCORED: they are computed from the test annotations
themselves, so they are a reference (what one consensus mask achieves against every rater), not a
method that predicts from the image. They give one mask per image: every personalised prediction
and every prior sample is that mask.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Consensus = Callable[[np.ndarray, np.ndarray], np.ndarray]


def majority_vote(annotations: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``annotations`` (N, R, H, W) (foreground: > 0), ``mask`` (N, R) bool -> (N, H, W) float32 in {0, 1}."""
    present = mask[:, :, None, None]
    votes = ((annotations > 0) & present).sum(1)
    return (2 * votes > mask.sum(1)[:, None, None]).astype(np.float32)


def staple(annotations: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """STAPLE of the present raters' foreground per image: (N, R, H, W), (N, R) -> (N, H, W) float32 in {0, 1}.

    An image whose annotations are all empty gives an empty mask (STAPLE is undefined there).
    """
    import SimpleITK as sitk  # loaded only when STAPLE runs (~90 MB resident)

    out = np.zeros((annotations.shape[0], *annotations.shape[2:]), dtype=np.float32)
    for index, (labels, present) in enumerate(zip(annotations > 0, mask)):
        if labels[present].any():
            images = [sitk.GetImageFromArray(label.astype(np.uint8)) for label in labels[present]]
            out[index] = sitk.GetArrayFromImage(sitk.STAPLE(images, 1.0)) > 0.5
    return out


CONSENSUS: dict[str, Consensus] = {"majority_vote": majority_vote, "staple": staple}
