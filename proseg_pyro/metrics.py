"""The paper's metrics: GED, soft Dice, Dice max/match, per-rater Dice.

Everything rests on one core, :func:`_gram`: the intersections of all pairs of K flattened binary
masks as one batched matrix product (its diagonal holds the mask sizes). IoU and Dice follow from
those exact counts under one of two conventions:

==============  ============================  ===============================================
convention      IoU                           Dice
==============  ============================  ===============================================
``"paper"``     I / U; two empty masks: 1     2I / (|a| + |b|); two empty masks: 1
``"dpersona"``  I / (U + 1e-8); two empty: 0  (2I + 1e-8) / (|a| + |b| + 1e-8); two empty: 1
==============  ============================  ===============================================

``"dpersona"`` is what the evaluation released with D-Persona and ProSeg (``metrics_set.py``)
computes; it differs from the paper's text in three more places:

* ``dice_max``: ``"paper"`` averages over annotations the best prediction's Dice, ``"dpersona"``
  over predictions the best annotation's;
* the Hungarian pairing minimises the cost ``1 - Dice`` as released (``"paper"`` maximises the
  Dice), which can pick another of two equally good pairings, so another per-rater Dice;
* the per-rater Dice of a table (:func:`table_rater_dice`) is always the Hungarian-matched one,
  personalised predictions included, so its mean equals ``dice_match`` wherever every rater
  annotated every image; ``"paper"`` pairs prediction i with rater i.

Both include the diagonal in ``d_aa`` and ``d_pp`` (so under ``"dpersona"`` an empty mask is at
distance 1 from itself) and average per image (per volume for 3D input).

Predictions are binarised ``> 0.5``; annotations must be binary. Inputs may be numpy arrays or
torch tensors (work runs on the probabilities' device); results are numpy arrays or floats. Bad
input raises :class:`~proseg_pyro.errors.DataError` (a ``ValueError``) with one clear message.

One module of ~500 lines on purpose: every score (per image, batched, the expert distances) is a
function of the same exact counts under the same conventions, so the checks, the counting core and
the conventions stay private to one place instead of being exported for a split.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .errors import DataError

ArrayLike = np.ndarray | torch.Tensor

CONVENTIONS = ("paper", "dpersona")
SOFT_DICE_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)
_EPS = 1e-8
_CHUNK_ELEMENTS = 2**25  # mask entries per chunk of images (128 MiB as float32)

__all__ = [
    "CONVENTIONS",
    "SOFT_DICE_THRESHOLDS",
    "image_metrics",
    "batch_metrics",
    "summarise",
    "dice_max_from_matrix",
    "dice_match_from_matrix",
    "matched_dice_from_matrix",
    "table_rater_dice",
    "mean_dice_matrix",
    "expert_distance_matrix",
    "mean_expert_distance",
    "random_expert_distances",
    "relative_sizes",
]


# ----------------------------------------------------------------------------- validation
def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise DataError(None, f"convention must be one of {CONVENTIONS}, got {convention!r}")


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype != bool and not np.issubdtype(arr.dtype, np.number):
            raise DataError(None, f"{name} must be a numeric or boolean array, not {arr.dtype}")
        # a read-only array (a map of the slice cache) is copied: torch shares only writable memory
        t = torch.as_tensor(arr if arr.flags.writeable else arr.copy())
    if t.is_complex():
        raise DataError(None, f"{name} must be real, got dtype {t.dtype}")
    return t


def _check_layout(x: torch.Tensor, lead: int, name: str, letters: str) -> None:
    """``x`` must be (``letters``, H, W) or (``letters``, D, H, W) with ``lead`` leading dims."""
    if x.ndim - lead not in (2, 3):
        expected = f"({letters}, H, W) or ({letters}, D, H, W)"
        raise DataError(None, f"{name} must have shape {expected}, got {tuple(x.shape)}")
    if 0 in x.shape:
        raise DataError(None, f"{name} must not be empty, got shape {tuple(x.shape)}")


def _check_probabilities(p: torch.Tensor, name: str) -> torch.Tensor:
    """Raise unless every value lies in [0, 1] (no NaN); integers become float, bool stays."""
    if p.dtype == torch.bool:
        return p
    if not p.is_floating_point():
        p = p.float()
    lo, hi = torch.aminmax(p)
    if torch.isnan(lo) or torch.isnan(hi):
        raise DataError(None, f"{name} contain NaN")
    if lo < 0 or hi > 1:
        raise DataError(None, f"{name} must lie in [0, 1], found [{lo.item():g}, {hi.item():g}]")
    return p


def _prepare_mask(
    mask: ArrayLike | None, shape: tuple[int, ...], name: str, device: torch.device
) -> torch.Tensor:
    """(N, R) bool presence mask; None means all present."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    m = _as_tensor(mask, name).to(device)
    if tuple(m.shape) != shape:
        raise DataError(None, f"{name} must have shape {shape}, got {tuple(m.shape)}")
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise DataError(None, f"{name} must be boolean")
        m = m != 0
    return m


def _prepare(
    annotations: ArrayLike, mask: ArrayLike | None, probabilities: ArrayLike, lead: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate; return annotations (N, A, ...) bool, mask (N, A) bool, probabilities (N, P, ...).

    ``lead`` is 1 for one image (``(A, ...)`` and ``(P, ...)``, no mask), 2 for a batch.
    """
    ann = _as_tensor(annotations, "annotations")
    prob = _as_tensor(probabilities, "probabilities")
    _check_layout(ann, lead, "annotations", "A" if lead == 1 else "N, A")
    _check_layout(prob, lead, "probabilities", "P" if lead == 1 else "N, P")
    if ann.shape[lead:] != prob.shape[lead:]:
        raise DataError(
            None,
            f"spatial shapes differ: annotations {tuple(ann.shape[lead:])}, "
            f"probabilities {tuple(prob.shape[lead:])}",
        )
    if lead == 1:
        ann, prob = ann[None], prob[None]
    if ann.shape[0] != prob.shape[0]:
        raise DataError(None, f"annotations hold {ann.shape[0]} images, probabilities {prob.shape[0]}")
    m = _prepare_mask(mask, tuple(ann.shape[:2]), "annotation_mask", prob.device)
    if not bool(m.any(1).all()):
        first = int((~m.any(1)).nonzero()[0])
        raise DataError(None, f"image {first} has no annotations (annotation_mask row all False)")
    ann = ann.to(prob.device)
    if ann.dtype != torch.bool:
        binary = ((ann == 0) | (ann == 1)).flatten(2).all(-1) | ~m  # missing slots: anything
        if not bool(binary.all()):
            raise DataError(None, "annotations must be boolean or binary (0/1), found other values")
        ann = ann != 0
    return ann, m, _check_probabilities(prob, "probabilities")


# ----------------------------------------------------------------------------- core
def _count_dtype(voxels: int) -> torch.dtype:
    """float32 sums of 0/1 products are exact up to 2**24 voxels; float64 beyond."""
    return torch.float32 if voxels <= 2**24 else torch.float64


def _gram(masks: torch.Tensor) -> np.ndarray:
    """0/1 masks (n, K, V) -> (n, K, K) float64 intersection counts; the diagonal holds the sizes.

    The rest of the arithmetic on these small matrices runs in numpy (no thread start-up per op).
    """
    return torch.bmm(masks, masks.transpose(1, 2)).cpu().numpy().astype(np.float64)


def _counts(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = np.diagonal(gram, axis1=-2, axis2=-1)
    return gram, sizes[..., :, None], sizes[..., None, :]


def _iou(gram: np.ndarray, convention: str) -> np.ndarray:
    """(n, K, K) IoU of every pair of masks from their Gram matrix."""
    inter, size_i, size_j = _counts(gram)
    union = size_i + size_j - inter
    if convention == "paper":
        return np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    return inter / (union + _EPS)


def _dice(gram: np.ndarray, convention: str) -> np.ndarray:
    """(n, K, K) Dice of every pair of masks from their Gram matrix."""
    inter, size_i, size_j = _counts(gram)
    total = size_i + size_j
    if convention == "paper":
        return np.divide(2 * inter, total, out=np.ones_like(inter), where=total > 0)
    return (2 * inter + _EPS) / (total + _EPS)


def _chunks(n_items: int, per_item: int, chunk_size: int | None) -> list[slice]:
    """Slices of ``chunk_size`` items (default: about ``_CHUNK_ELEMENTS`` entries per chunk)."""
    step = chunk_size or max(1, _CHUNK_ELEMENTS // per_item)
    return [slice(start, start + step) for start in range(0, n_items, step)]


def _nanmean(v: np.ndarray, axis: int) -> np.ndarray:
    """Mean along ``axis`` ignoring NaN; NaN (and no warning) where all values are NaN."""
    count = (~np.isnan(v)).sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.nansum(v, axis) / count, np.nan)


# ----------------------------------------------------------------------------- Dice matrix
def dice_max_from_matrix(
    dice: ArrayLike, convention: str = "paper", mask: ArrayLike | None = None
) -> np.ndarray | float:
    """Dice max from Dice matrices ``dice[..., a, p]`` (annotation a vs prediction p).

    ``"paper"``: mean over annotations of the max over predictions; ``"dpersona"``: mean over
    predictions of the max over annotations. ``mask`` (..., A) bool drops missing annotations.
    Returns a float for one (A, P) matrix, else an array of shape ``dice.shape[:-2]``.
    """
    _check_convention(convention)
    m = np.asarray(dice, dtype=np.float64)
    present = np.ones(m.shape[:-1], bool) if mask is None else np.asarray(mask, bool)
    if convention == "paper":
        out = np.where(present, m.max(-1), 0.0).sum(-1) / present.sum(-1)
    else:
        out = np.where(present[..., None], m, -np.inf).max(-2).mean(-1)
    return float(out) if out.ndim == 0 else out


def matched_dice_from_matrix(dice: ArrayLike, convention: str = "paper") -> np.ndarray:
    """Dice matrix (A, P), P >= A -> (A,): each annotation's Dice with its Hungarian match.

    ``"paper"`` maximises the total Dice; ``"dpersona"`` minimises the total of ``1 - Dice`` as the
    released code does (the same optimum; on a tie the pairing, so the per-rater values, may differ).
    """
    _check_convention(convention)
    m = np.asarray(dice, dtype=np.float64)
    if m.ndim != 2:
        raise DataError(None, f"a Dice matrix must have shape (A, P), got {m.shape}")
    if m.shape[1] < m.shape[0]:
        raise DataError(
            None,
            "dice_match needs at least as many predictions as annotations, "
            f"got P={m.shape[1]} < A={m.shape[0]}",
        )
    if convention == "paper":
        rows, cols = linear_sum_assignment(m, maximize=True)
    else:
        rows, cols = linear_sum_assignment(1 - m)
    return m[rows, cols]  # rows == arange(A) since P >= A


def dice_match_from_matrix(dice: ArrayLike, convention: str = "paper") -> float:
    """Dice match of a Dice matrix (A, P): mean over annotations of the max-total-Dice pairing."""
    return float(matched_dice_from_matrix(dice, convention).mean())


def table_rater_dice(summary: dict[str, float | list[float]], convention: str, paired: bool) -> list[float]:
    """The per-rater Dice ``D_Ai`` a table reports, from a :func:`summarise` row.

    ``"paper"`` with paired predictions (prediction i meant for rater i): ``dice_rater``, the fixed
    pairing; otherwise, and always under ``"dpersona"`` (the released evaluation matches every
    rater, personalised predictions included): ``dice_rater_matched``.
    """
    _check_convention(convention)
    return list(summary["dice_rater" if paired and convention == "paper" else "dice_rater_matched"])


# ----------------------------------------------------------------------------- image metrics
def _soft_dice(
    ann: torch.Tensor, mask: torch.Tensor, prob: torch.Tensor, maps: torch.Tensor, convention: str
) -> np.ndarray:
    """ann (n, A, V) 0/1, zero where missing; mask (n, A); prob (n, P, V) -> (n,) soft Dice.

    Mean over thresholds t of Dice(mean annotation > t, mean probability > t); ``maps`` (n, 2T, V)
    is scratch space for the thresholded means. The annotation mean is an exact fraction compared
    in float64; the probability mean and its comparison use the probabilities' precision (float32
    unless they are float64), so a value equal to a threshold in that precision is excluded.
    """
    n_t = len(SOFT_DICE_THRESHOLDS)
    counts = torch.bmm(mask[:, None].to(ann.dtype), ann)[:, 0]
    mean_ann = counts.double() / mask.sum(1, dtype=torch.float64)[:, None]
    precision = torch.float64 if prob.dtype == torch.float64 else torch.float32
    mean_prob = prob.sum(1, dtype=precision) / prob.shape[1]
    thresholds = torch.tensor(SOFT_DICE_THRESHOLDS, dtype=torch.float64, device=prob.device)
    thresholds = thresholds[:, None]
    torch.gt(mean_ann[:, None], thresholds, out=maps[:, :n_t])
    torch.gt(mean_prob[:, None], thresholds.to(precision), out=maps[:, n_t:])
    dice = _dice(_gram(maps), convention)
    return dice[:, np.arange(n_t), n_t + np.arange(n_t)].mean(-1)


def _chunk_metrics(
    ann: torch.Tensor,
    mask: torch.Tensor,
    prob: torch.Tensor,
    scratch: torch.Tensor,
    convention: str,
    paired: bool,
) -> dict[str, np.ndarray]:
    """Metrics of a chunk of n images, all from one Gram matrix of [annotations; predictions].

    ann (n, A, V) bool, mask (n, A) bool, prob (n, P, V); ``scratch`` (n, A + P + 2T, V) is reused
    between chunks (fresh big buffers cost page faults). Returns the arrays of
    :func:`batch_metrics` for these images, except ``ged``.
    """
    n_ann, n_pred = ann.shape[1], prob.shape[1]
    masks = scratch[:, : n_ann + n_pred]
    torch.mul(ann, mask[..., None], out=masks[:, :n_ann])  # missing raters: empty, weight 0 below
    torch.gt(prob, 0.5, out=masks[:, n_ann:])
    gram = _gram(masks)
    dist = 1 - _iou(gram, convention)
    dice = _dice(gram, convention)[:, :n_ann, n_ann:]  # (n, A, P)
    present = mask.cpu().numpy()
    w = present.astype(np.float64)[..., None]  # (n, A, 1)
    n_present = w.sum((1, 2))
    matched = np.full(present.shape, np.nan)
    for i, row in enumerate(present):
        matched[i, row] = matched_dice_from_matrix(dice[i, row], convention)
    out = {
        "d_pa": (dist[:, :n_ann, n_ann:] * w).sum((1, 2)) / (n_present * n_pred),
        "d_pp": dist[:, n_ann:, n_ann:].mean((1, 2)),
        "d_aa": (dist[:, :n_ann, :n_ann] * w * w.transpose(0, 2, 1)).sum((1, 2)) / n_present**2,
        "dice_soft": _soft_dice(masks[:, :n_ann], mask, prob, scratch[:, masks.shape[1] :], convention),
        "dice_max": dice_max_from_matrix(dice, convention, present),
        "dice_match": _nanmean(matched, axis=1),
        "dice_rater_matched": matched,
    }
    if paired:
        out["dice_rater"] = np.where(present, np.diagonal(dice, axis1=1, axis2=2), np.nan)
    return out


def _batch_metrics(
    ann: torch.Tensor,
    mask: torch.Tensor,
    prob: torch.Tensor,
    convention: str,
    paired: bool,
    chunk_size: int | None,
) -> dict[str, np.ndarray]:
    """:func:`batch_metrics` on inputs checked by :func:`_prepare`."""
    n_img, n_ann, n_pred = ann.shape[0], ann.shape[1], prob.shape[1]
    if paired and n_pred != n_ann:
        raise DataError(None, f"paired metrics need one prediction per rater: P={n_pred}, A={n_ann}")
    most = int(mask.sum(1).max())
    if n_pred < most:
        raise DataError(
            None,
            f"dice_match needs at least as many predictions as annotations, got P={n_pred} < A={most}",
        )
    voxels = ann[0, 0].numel()
    chunks = _chunks(n_img, (n_ann + n_pred) * voxels, chunk_size)
    rows = n_ann + n_pred + 2 * len(SOFT_DICE_THRESHOLDS)
    scratch = torch.empty(
        min(chunks[0].stop, n_img), rows, voxels, dtype=_count_dtype(voxels), device=prob.device
    )
    parts = []
    for sl in chunks:
        a, m, p = ann[sl].flatten(2), mask[sl], prob[sl].flatten(2)
        parts.append(_chunk_metrics(a, m, p, scratch[: len(m)], convention, paired))
    out = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return {"ged": 2 * out["d_pa"] - out["d_pp"] - out["d_aa"], **out}


def batch_metrics(
    annotations: ArrayLike,
    annotation_mask: ArrayLike | None,
    probabilities: ArrayLike,
    convention: str = "paper",
    paired: bool = False,
    chunk_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Metrics of N images at once, vectorised over images, annotations and predictions.

    annotations (N, A, H, W) or (N, A, D, H, W) binary; annotation_mask (N, A) bool, rater a
    annotated image n (None: all did; missing raters are left out of every metric of that image);
    probabilities (N, P, ...) in [0, 1]. ``paired=True`` (P == A, prediction a meant for rater a)
    adds ``dice_rater``. Images go ``chunk_size`` at a time (default: ~2**25 mask entries).

    Returns float64 arrays ``ged``, ``d_pa``, ``d_pp``, ``d_aa``, ``dice_soft``, ``dice_max``,
    ``dice_match`` (N,) and ``dice_rater_matched`` (and ``dice_rater``) (N, A), NaN for missing
    raters. Row n equals :func:`image_metrics` of image n's present annotations.
    """
    _check_convention(convention)
    ann, mask, prob = _prepare(annotations, annotation_mask, probabilities, lead=2)
    return _batch_metrics(ann, mask, prob, convention, paired, chunk_size)


def image_metrics(
    annotations: ArrayLike,
    probabilities: ArrayLike,
    convention: str = "paper",
    paired: bool | None = None,
) -> dict[str, float | list[float]]:
    """Metrics of ONE image.

    annotations (A, H, W) or (A, D, H, W) binary, only the raters that annotated; probabilities
    (P, ...) in [0, 1], one map per prediction. Returns floats ``ged``, ``d_pa``, ``d_pp``,
    ``d_aa``, ``dice_soft``, ``dice_max``, ``dice_match``, the list ``dice_rater_matched`` (A,)
    and, if ``paired`` (None: whenever P == A), the list ``dice_rater`` (A,).

    Raises :class:`~proseg_pyro.errors.DataError` (a ``ValueError``) on bad input: shapes that are
    not (A, ...) and (P, ...) with the same 2D or 3D spatial shape, no annotations, non-numeric or
    complex dtypes, annotations not 0/1, probabilities outside [0, 1] or NaN, P < A, ``paired``
    with P != A, or an unknown ``convention``.
    """
    _check_convention(convention)
    ann, mask, prob = _prepare(annotations, None, probabilities, lead=1)
    if paired is None:
        paired = prob.shape[1] == ann.shape[1]
    res = _batch_metrics(ann, mask, prob, convention, paired, chunk_size=None)
    return {k: v[0].tolist() if v.ndim == 2 else float(v[0]) for k, v in res.items()}


def summarise(per_image: dict[str, ArrayLike]) -> dict[str, float | list[float]]:
    """Average per-image metrics over images, ignoring NaN (metric undefined for that image).

    (N,) arrays give a float, (N, A) arrays (per-rater metrics) a list of A per-rater means;
    a metric undefined for every image gives NaN.
    """
    out: dict[str, float | list[float]] = {}
    for key, values in per_image.items():
        mean = _nanmean(np.asarray(values, dtype=np.float64), axis=0)
        out[key] = mean.tolist() if mean.ndim else float(mean)
    return out


# ----------------------------------------------------------------------------- expert distances
def _pairwise(
    masks: ArrayLike,
    mask: ArrayLike | None,
    convention: str,
    score: Callable[[np.ndarray, str], np.ndarray] = _iou,
) -> np.ndarray:
    """masks (N, K, ...) -> (N, K, K) ``score`` (:func:`_iou` or :func:`_dice`) of every pair of
    masks (binarised > 0.5) of the same image; NaN where either is missing (``mask`` (N, K))."""
    _check_convention(convention)
    x = _as_tensor(masks, "masks")
    _check_layout(x, 2, "masks", "N, K")
    m = _prepare_mask(mask, tuple(x.shape[:2]), "mask", x.device)
    n_img, n_masks, voxels = x.shape[0], x.shape[1], x[0, 0].numel()
    out = np.empty((n_img, n_masks, n_masks))
    chunks = _chunks(n_img, n_masks * voxels, None)
    binary = torch.empty(
        min(chunks[0].stop, n_img), n_masks, voxels, dtype=_count_dtype(voxels), device=x.device
    )
    for sl in chunks:
        chunk = _check_probabilities(torch.where(m[sl, :, None], x[sl].flatten(2), 0), "masks")
        out[sl] = score(_gram(torch.gt(chunk, 0.5, out=binary[: len(chunk)])), convention)
    present = m.cpu().numpy()
    out[~(present[:, :, None] & present[:, None, :])] = np.nan
    return out


def mean_dice_matrix(
    annotations: ArrayLike,
    annotation_mask: ArrayLike | None,
    probabilities: ArrayLike,
    convention: str = "paper",
) -> np.ndarray:
    """(A, P): mean over images where rater a annotated of Dice(annotation a, prediction p > 0.5).

    The cross-rater matrix of personalised predictions (prediction p meant for rater p: the
    diagonal is the mean ``dice_rater``). Inputs as in :func:`batch_metrics`.
    """
    _check_convention(convention)
    ann, mask, prob = _prepare(annotations, annotation_mask, probabilities, lead=2)
    both = torch.cat([ann.to(prob.dtype), prob], 1)
    present = torch.cat([mask, torch.ones(prob.shape[:2], dtype=torch.bool, device=mask.device)], 1)
    dice = _pairwise(both, present, convention, score=_dice)[:, : ann.shape[1], ann.shape[1] :]
    return _nanmean(dice, axis=0)


def expert_distance_matrix(
    annotations: ArrayLike, mask: ArrayLike | None = None, convention: str = "paper"
) -> np.ndarray:
    """(R, R): mean over images where both annotated of 1 - IoU(rater i, rater j) (paper's Table 5).

    annotations (N, R, H, W) or (N, R, D, H, W) binary (probabilities are binarised > 0.5);
    mask (N, R) bool, None: all annotated. NaN for two raters who never annotated the same image.
    """
    return _nanmean(1 - _pairwise(annotations, mask, convention), axis=0)


def mean_expert_distance(
    masks: ArrayLike, mask: ArrayLike | None = None, convention: str = "paper"
) -> np.ndarray:
    """(N,) per-image mean of d = 1 - IoU over pairs of distinct present masks (paper's Fig. 1).

    The expectation of :func:`random_expert_distances`. ``masks`` (N, R, ...) are annotations or
    model samples (binarised > 0.5); ``mask`` (N, R) bool, None: all present. NaN for an image
    with fewer than two masks.
    """
    d = 1 - _pairwise(masks, mask, convention)
    r = d.shape[1]
    d[:, np.arange(r), np.arange(r)] = np.nan
    return _nanmean(d.reshape(len(d), r * r), axis=1)


def random_expert_distances(
    masks: ArrayLike,
    mask: ArrayLike | None = None,
    num_draws: int = 1,
    rng: np.random.Generator | int | None = None,
    convention: str = "paper",
) -> np.ndarray:
    """(N, num_draws) draws of d = 1 - IoU between two distinct, uniformly drawn masks per image.

    The distribution plotted in the paper's Fig. 1, for annotations or model samples (``masks``,
    ``mask`` as in :func:`mean_expert_distance`). NaN for an image with fewer than two masks.
    """
    d = 1 - _pairwise(masks, mask, convention)
    n_img, r = d.shape[:2]
    present = ~np.isnan(d[:, np.arange(r), np.arange(r)])
    order = np.argsort(~present, axis=1, kind="stable")  # present slots first
    count = present.sum(1)[:, None]
    gen = np.random.default_rng(rng)
    first = (gen.random((n_img, num_draws)) * count).astype(int)
    second = (gen.random((n_img, num_draws)) * np.maximum(count - 1, 1)).astype(int)
    second = np.minimum(second + (second >= first), r - 1)  # skip ``first``: uniform over others
    rows = np.arange(n_img)[:, None]
    return np.where(count >= 2, d[rows, order[rows, first], order[rows, second]], np.nan)


def relative_sizes(masks: ArrayLike, mask: ArrayLike | None = None) -> np.ndarray:
    """(R,): each rater's mean size relative to the others on the same image.

    Per image, each present rater's foreground count divided by the mean count of the image's
    present raters, then averaged over the images (those with no foreground at all left out).
    ``masks`` (N, R, ...) annotations or personalised predictions (binarised > 0.5); ``mask``
    (N, R) bool, None: all present. 1.0 everywhere: the raters draw the same size; a rater at
    1.10 outlines a tenth more than the average rater. NaN for a rater present on no counted image.
    """
    sizes = (_as_tensor(masks, "masks") > 0.5).flatten(2).sum(-1).double().numpy()  # (N, R)
    present = np.ones(sizes.shape, bool) if mask is None else np.asarray(mask, bool)
    mean = np.where(present, sizes, 0).sum(1) / np.maximum(present.sum(1), 1)
    counted = mean > 0
    ratio = np.where(present[counted], sizes[counted] / mean[counted, None], np.nan)
    return _nanmean(ratio, axis=0)
