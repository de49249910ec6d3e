"""The figures: PNGs that open, hold what their captions say, and the embeddings behind them."""
from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from matplotlib.image import imread

import proseg_pyro.cli.figures  # noqa: F401  (registers the command)
from proseg_pyro.cli.main import cli
from proseg_pyro.data.export import write_manifest_dataset
from proseg_pyro.figures import distance_histograms, make_figures, pca_2d, sample_grid, tsne_2d

from .holdout import holdout_fixture  # noqa: F401  (fixture)


def _png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)[..., :3]
    assert pixels.std() > 0.05  # not a blank canvas
    return pixels


def _has_colour(pixels: np.ndarray, hex_colour: str, count: int = 20) -> bool:
    """Whether ``count`` pixels show ``hex_colour``, drawn opaque or half-transparent on white."""
    colour = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    towards = colour - 1.0  # from white to the colour
    alpha = ((pixels - 1.0) @ towards) / (towards @ towards)
    off = np.linalg.norm(pixels - 1.0 - alpha[..., None] * towards, axis=-1)
    return int(((alpha > 0.4) & (alpha < 1.05) & (off < 0.06)).sum()) >= count


def test_make_figures_writes_the_three_figures(holdout, tmp_path):
    model, guide, _ = holdout.load()
    paths = make_figures(model, guide, holdout.slices.split("test"), tmp_path, num_images=3, num_samples=6,
                         grid_samples=2, tau_samples=50)
    assert set(paths) == {"samples", "distances", "styles", "tau"}
    styles = _png(paths["styles"])
    assert styles.shape[1] > 1.8 * styles.shape[0]  # two matrices side by side
    grid = _png(paths["samples"])
    assert grid.shape[1] > 2 * grid.shape[0]  # 1 + 4 annotations + 3 styles + 2 samples columns, 3 rows
    _png(paths["distances"])
    tau = _png(paths["tau"])
    assert all(_has_colour(tau, colour) for colour in ("#1f77b4", "#ff7f0e", "#2ca02c"))  # one colour per rater


def test_sample_grid_draws_annotations_and_predictions_in_their_colours(tmp_path):
    images = np.random.default_rng(0).normal(size=(2, 1, 16, 16)).astype(np.float32)
    disc = (np.hypot(*np.mgrid[-8:8, -8:8]) < 5)
    grid = sample_grid(images, np.broadcast_to(disc, (2, 2, 16, 16)), np.array([[True, False], [True, True]]),
                       ["a", "b"], np.broadcast_to(disc * 0.9, (2, 1, 16, 16)), ["a"],
                       np.zeros((2, 1, 16, 16)), tmp_path / "grid.png")
    pixels = _png(grid)
    assert _has_colour(pixels, "#f28e2b") and _has_colour(pixels, "#4e79a7")  # annotations, model styles
    assert not _has_colour(pixels, "#59a14f")  # the empty prior samples draw nothing


def test_distance_histograms_compare_annotations_and_model(tmp_path):
    rng = np.random.default_rng(0)
    path = distance_histograms(rng.uniform(0.2, 0.4, 100), np.r_[rng.uniform(0.5, 0.7, 100), np.nan],
                               tmp_path / "d.png")
    pixels = _png(path)
    assert _has_colour(pixels, "#f28e2b", 200) and _has_colour(pixels, "#59a14f", 200)


def test_embeddings_keep_clusters_apart():
    rng = np.random.default_rng(0)
    centres = 4 * np.eye(3, 8)
    points = np.concatenate([centre + rng.normal(size=(40, 8)) * 0.3 for centre in centres])
    for embedded in (pca_2d(points), tsne_2d(points, perplexity=10, steps=250)):
        clusters = embedded.reshape(3, 40, 2)
        spread = np.linalg.norm(clusters - clusters.mean(1, keepdims=True), axis=-1).mean()
        means = clusters.mean(1)
        gaps = [np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i + 1, 3)]
        assert min(gaps) > 3 * spread


def test_figures_command(holdout, tmp_path):
    manifest = write_manifest_dataset(holdout.known, tmp_path / "data")  # the raters the model knows
    args = ["figures", str(holdout.checkpoint), "--data", str(manifest), "--out", str(tmp_path), "--images", "2",
            "--samples", "4", "--embedding", "pca"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    other_raters = CliRunner().invoke(cli, [*args[:2], "--out", str(tmp_path / "other"), "--images", "2"])
    assert other_raters.exit_code == 2 and "do not match last.pt's ['tight', 'ragged', 'core']" in other_raters.output
    for name in ("samples.png", "distances.png", "tau_pca.png"):
        _png(tmp_path / name)
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "already exists" in again.output
