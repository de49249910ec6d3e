"""The paper's figures as PNGs (matplotlib, Agg; no display needed).

* :func:`sample_grid` (Figs. 9-12): per image, the image, each rater's annotation, the model's
  prediction in each rater's style and a few prior samples;
* :func:`distance_histograms` (Figs. 1, 8): distance (1 - IoU) between two random experts, for the
  annotations and for the model's prior samples;
* :func:`tau_embedding` (Fig. 6): samples of q(tau | r) per rater, embedded in 2D by PCA or t-SNE;
* :func:`style_distances`: the experts' distance matrix (1 - IoU between two raters' annotations)
  beside the same distances between the model's predictions in the raters' styles: a model that
  kept the styles apart reproduces the experts' pattern, one whose styles collapsed shows zeros.

:func:`make_figures` computes what they show from a trained model and a data split.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from . import inference, metrics
from .data.slices import SliceSet
from .guide import ProSegGuide
from .io_utils import atomic_path
from .model import ProSegModel
from .names import EMBEDDINGS

ANNOTATION_COLOUR, STYLE_COLOUR, SAMPLE_COLOUR = "#f28e2b", "#4e79a7", "#59a14f"


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return Path(path)


def _overlay(ax: Axes, image: np.ndarray, mask: np.ndarray | None, colour: str, title: str) -> None:
    """``image`` (H, W) in grey with ``mask`` (H, W) bool filled and outlined in ``colour``."""
    ax.imshow(image, cmap="gray", interpolation="nearest")
    if mask is not None and mask.any():
        ax.imshow(np.ma.masked_where(~mask, mask), cmap=ListedColormap([colour]), alpha=0.45,
                  interpolation="nearest", vmin=0, vmax=1)
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=0.8)
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def sample_grid(images: np.ndarray, annotations: np.ndarray, mask: np.ndarray, annotation_raters: list[str],
                personalised: np.ndarray, style_raters: list[str], prior: np.ndarray,
                path: str | os.PathLike) -> Path:
    """One row per image: ``images`` (N, C, H, W) (channel 0 shown), each rater's ``annotations``
    (N, R, H, W) where ``mask`` (N, R) says it exists, the personalised predictions (N, M, H, W)
    in the ``style_raters``' styles and the prior samples (N, S, H, W) (probabilities > 0.5)."""
    rows, raters, styles, samples = len(images), annotations.shape[1], personalised.shape[1], prior.shape[1]
    columns = 1 + raters + styles + samples
    figure = Figure(figsize=(1.25 * columns, 1.35 * rows + 0.5))
    axes = figure.subplots(rows, columns, squeeze=False)
    for row in range(rows):
        image = images[row, 0]
        _overlay(axes[row, 0], image, None, "", "image")
        for rater in range(raters):
            present, name = bool(mask[row, rater]), annotation_raters[rater]
            _overlay(axes[row, 1 + rater], image, annotations[row, rater].astype(bool) if present else None,
                     ANNOTATION_COLOUR, name if present else f"{name}: none")
        for style in range(styles):
            _overlay(axes[row, 1 + raters + style], image, personalised[row, style] > 0.5, STYLE_COLOUR,
                     f"model as {style_raters[style]}")
        for sample in range(samples):
            _overlay(axes[row, 1 + raters + styles + sample], image, prior[row, sample] > 0.5, SAMPLE_COLOUR,
                     f"prior sample {sample + 1}")
    figure.suptitle("Image | experts' annotations (orange) | model in each expert's style (blue) | "
                    "diverse prior samples (green)", fontsize=9)
    return _save(figure, path)


def distance_histograms(annotation_distances: np.ndarray, model_distances: np.ndarray,
                        path: str | os.PathLike) -> Path:
    """Histograms of d = 1 - IoU between two random experts: annotations vs model samples (1D arrays)."""
    figure = Figure(figsize=(6, 3.6))
    ax = figure.subplots()
    bins = np.linspace(0, 1, 26)
    for values, label, colour in ((annotation_distances, "annotations (two random experts)", ANNOTATION_COLOUR),
                                  (model_distances, "model (two random prior samples)", SAMPLE_COLOUR)):
        values = values[np.isfinite(values)]
        ax.hist(values, bins=bins, density=True, alpha=0.55, color=colour,
                label=f"{label}: mean {values.mean():.3f}, n={len(values)}")
        ax.axvline(values.mean(), color=colour, linestyle="--", linewidth=1)
    ax.set_xlabel("distance 1 - IoU between two random experts")
    ax.set_ylabel("density")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("Inter-expert distance: annotations vs model samples", fontsize=9)
    return _save(figure, path)


def style_distances(experts: np.ndarray, predicted: np.ndarray, names: list[str], path: str | os.PathLike) -> Path:
    """Two heat maps on one colour scale: ``experts`` (R, R) and ``predicted`` (R, R) mean 1 - IoU."""
    figure = Figure(figsize=(8.4, 3.8))
    axes = figure.subplots(1, 2)
    top = max(float(np.nanmax(experts)), float(np.nanmax(predicted)), 1e-3)
    for ax, matrix, title in ((axes[0], experts, "experts' annotations"),
                              (axes[1], predicted, "predictions in each rater's style")):
        shown = ax.imshow(matrix, vmin=0, vmax=top, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        off = matrix[~np.eye(len(matrix), dtype=bool)]
        ax.set_title(f"{title}\nmean off-diagonal {np.nanmean(off):.3f}", fontsize=9)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if value < top / 2 else "black")
    figure.colorbar(shown, ax=list(axes), shrink=0.8, label="1 - IoU")
    return _save(figure, path)


def pca_2d(points: np.ndarray) -> np.ndarray:
    """Project ``points`` (n, d) onto their first two principal axes: (n, 2)."""
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def tsne_2d(points: np.ndarray, perplexity: float = 30.0, steps: int = 500, seed: int = 0) -> np.ndarray:
    """Exact t-SNE of ``points`` (n, d) into 2D (n, 2): Gaussian affinities at ``perplexity``
    (bisection per point), Student-t similarities, KL minimised by Adam with early exaggeration."""
    x = torch.as_tensor(points, dtype=torch.float32)
    n = len(x)
    perplexity = min(perplexity, (n - 1) / 3)
    distances = torch.cdist(x, x).square()
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    # each row shifted so its nearest neighbour is at 0: the same affinities, no underflow
    shifted = distances - distances.masked_fill(~off_diagonal, torch.inf).min(1, keepdim=True).values
    low, high = torch.zeros(n, dtype=x.dtype), torch.full((n,), torch.inf, dtype=x.dtype)
    beta = torch.ones(n, dtype=x.dtype) / distances[off_diagonal].median().clamp_min(1e-12)
    for _ in range(60):
        p = torch.where(off_diagonal, torch.exp(-shifted * beta[:, None]), 0)
        p = p / p.sum(1, keepdim=True)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(1)
        too_wide = entropy > np.log(perplexity)
        low, high = torch.where(too_wide, beta, low), torch.where(too_wide, high, beta)
        beta = torch.where(torch.isinf(high), beta * 2, (low + high) / 2)
    joint = (p + p.T) / (2 * n)
    generator = torch.Generator().manual_seed(seed)
    y = (1e-2 * torch.randn(n, 2, generator=generator, dtype=x.dtype)).requires_grad_(True)
    optimizer = torch.optim.Adam([y], lr=1.0)
    with torch.enable_grad():
        for step in range(steps):
            norms = y.square().sum(1)
            kernel = (1 / (1 + (norms[:, None] + norms[None] - 2 * y @ y.T).clamp_min(0))).masked_fill(~off_diagonal, 0)
            log_q = kernel.clamp_min(1e-30).log() - kernel.sum().log()
            target = joint * (12.0 if step < steps // 4 else 1.0)  # early exaggeration
            loss = -(target * log_q).sum()  # KL(target || q) up to a constant
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return y.detach().numpy()


def tau_embedding(samples: np.ndarray, names: list[str], path: str | os.PathLike, method: str = "pca",
                  enrolled: int = 0, seed: int = 0) -> Path:
    """Scatter of ``samples`` (R, M, T) of q(tau | r), one colour per rater (``names``; the last
    ``enrolled`` are marked as enrolled), embedded in 2D by ``method`` ("pca" or "tsne")."""
    if method not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {method!r}")
    raters, count = samples.shape[:2]
    flat = samples.reshape(raters * count, -1)
    points = (pca_2d(flat) if method == "pca" else tsne_2d(flat, seed=seed)).reshape(raters, count, 2)
    figure = Figure(figsize=(5, 4.4))
    ax = figure.subplots()
    colours = [f"C{index % 10}" for index in range(raters)]
    for index, (name, colour) in enumerate(zip(names, colours)):
        new = index >= raters - enrolled
        ax.scatter(*points[index].T, s=9, alpha=0.6, color=colour, marker="^" if new else "o",
                   label=f"{name} (enrolled)" if new else name)
    ax.legend(fontsize=7, markerscale=1.5)
    axis = "PC" if method == "pca" else "t-SNE "
    ax.set_xlabel(f"{axis}1" + ("\n(an enrolled rater's style also has an offset, not shown here)" if enrolled else ""))
    ax.set_ylabel(f"{axis}2")
    ax.set_title(f"Rater preference tau ~ q(tau | r), {count} samples per rater "
                 f"({'PCA' if method == 'pca' else 't-SNE'})", fontsize=9)
    return _save(figure, path)


def figure_paths(out_dir: str | os.PathLike, embedding: str = "pca") -> dict[str, Path]:
    """Where :func:`make_figures` writes: ``samples``, ``distances``, ``styles`` and ``tau`` PNGs."""
    out = Path(out_dir)
    return {"samples": out / "samples.png", "distances": out / "distances.png", "styles": out / "styles.png",
            "tau": out / f"tau_{embedding}.png"}


@torch.no_grad()
def make_figures(model: ProSegModel, guide: ProSegGuide, slices: SliceSet, out_dir: str | os.PathLike,
                 num_images: int = 4, num_samples: int = 16, grid_samples: int = 4, tau_samples: int = 200,
                 embedding: str = "pca", device: torch.device | str = "cpu", seed: int = 0,
                 batch_size: int = 16, progress: bool = False) -> dict[str, Path]:
    """Write the four figures for ``slices`` (e.g. the test split) to ``out_dir``; returns their paths.

    The grid shows the ``num_images`` images on which the experts disagree most; distances use
    every image (annotations vs ``num_samples`` prior samples each). ``progress``: a bar over the
    sampled batches, on a terminal only.
    """
    config = model.config
    names = config.slot_names()
    paths = figure_paths(out_dir, embedding)
    torch.manual_seed(seed)
    images = torch.as_tensor(np.array(slices.images), dtype=torch.float32, device=device)
    starts = tqdm(range(0, len(images), batch_size), desc="figures", unit="batch",
                  disable=None if progress else True, leave=False)
    prior = torch.cat([inference.prior(model, guide, images[start:start + batch_size], num_samples).transpose(0, 1)
                       for start in starts]).cpu().numpy()  # (N, S, H, W)
    rng = np.random.default_rng(seed)
    annotation_d = metrics.random_expert_distances(slices.annotations, slices.mask, 20, rng)
    model_d = metrics.random_expert_distances(prior, None, 20, rng)
    distance_histograms(annotation_d.ravel(), model_d.ravel(), paths["distances"])

    styles_mean = torch.cat([inference.personalised(model, guide, images[start:start + batch_size],
                                                    list(range(config.num_raters)), num_samples).mean(0)
                             for start in range(0, len(images), batch_size)]).cpu().numpy()  # (N, R, H, W)
    style_distances(metrics.expert_distance_matrix(slices.annotations, slices.mask),
                    metrics.expert_distance_matrix(styles_mean, None), names[:config.num_raters],
                    paths["styles"])

    spread = np.nan_to_num(metrics.mean_expert_distance(slices.annotations, slices.mask), nan=-1.0)
    shown = np.argsort(-spread, kind="stable")[:num_images]
    personalised = inference.personalised(model, guide, images[shown], list(range(len(names))), num_samples)
    styles = names[:config.num_raters] + [f"{name}\n(enrolled)" for name in config.enrolled_raters]
    sample_grid(slices.images[shown], slices.annotations[shown], slices.mask[shown], list(slices.raters),
                personalised.mean(0).cpu().numpy(), styles, prior[shown, :grid_samples], paths["samples"])

    tau = guide.tau_dist(torch.arange(len(names), device=device)).sample((tau_samples,))  # (M, R, T)
    tau_embedding(tau.transpose(0, 1).cpu().numpy(), names, paths["tau"], embedding,
                  enrolled=len(config.enrolled_raters), seed=seed)
    return paths
