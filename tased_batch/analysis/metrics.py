"""Saliency metrics as the MIT saliency benchmark defines them (the code DHF1K's evaluation uses).

Each function follows the MATLAB file of the same metric in ``cvzoya/saliency``
(``code_forMetrics/NSS.m``, ``CC.m``, ``similarity.m``, ``KLdiv.m``, ``AUC_Judd.m``,
``AUC_shuffled.m``); docs/metrics.md spells out every formula and each place where this
code differs from that code (and why). In short:

* the prediction is resized to the ground truth's size first (:func:`resize_to`,
  bicubic like MATLAB's ``imresize`` default; uint8 stays uint8 as in MATLAB);
* NSS and CC standardise with the *sample* standard deviation (MATLAB's ``std``);
* KLD and SIM treat maps as distributions that sum to 1, with ``EPS`` = MATLAB's ``eps``;
* AUC-Judd is tie-aware instead of randomly jittered, so it is deterministic;
* s-AUC draws its negatives from an "other" fixation map with a seeded generator.

Inputs are numpy arrays: one map (H x W) or a batch (T x H x W). Map-vs-map metrics return
a float for one map and a length-T array for a batch. A degenerate frame (no fixations)
scores NaN, as in the MATLAB code; a constant prediction scores chance (NSS 0, CC 0,
AUC 0.5) where the MATLAB code would divide by zero.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

EPS = 2.220446049250313e-16
"""MATLAB's ``eps`` (2.2204e-16), used by KLD exactly as ``KLdiv.m`` does."""

__all__ = [
    "EPS",
    "auc_judd",
    "auc_shuffled",
    "cc",
    "kld",
    "nss",
    "resize_to",
    "sim",
]


def resize_to(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one map or a batch to ``size`` (H, W), the ground truth's size.

    Bicubic (Keys, a = -0.5) and antialiased when shrinking, which is what MATLAB's
    ``imresize`` does by default. uint8 input is rounded and clipped back to uint8, as
    ``imresize`` does for uint8 images; any other input is resized in float32.
    """
    arr = np.asarray(maps)
    h, w = int(size[0]), int(size[1])
    if arr.shape[-2:] == (h, w):
        return arr
    batch = arr[None] if arr.ndim == 2 else arr
    if arr.dtype == np.uint8:
        out = np.stack(
            [
                np.asarray(Image.fromarray(np.ascontiguousarray(m)).resize((w, h), Image.Resampling.BICUBIC))
                for m in batch
            ]
        )
    else:
        out = np.stack(
            [
                np.asarray(
                    Image.fromarray(np.ascontiguousarray(m, dtype=np.float32)).resize((w, h), Image.Resampling.BICUBIC)
                )
                for m in batch
            ]
        )
    return out[0] if arr.ndim == 2 else out


def _batch(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """(T, N) float64 view of a map or a batch, and whether the input was a single map."""
    a = np.asarray(x)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected a map (H x W) or a batch (T x H x W), got shape {a.shape}")
    single = a.ndim == 2
    a = a[None] if single else a
    return a.reshape(a.shape[0], -1).astype(np.float64), single


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Resize ``pred`` to ``gt``'s size and flatten both to (T, N) float64."""
    gt = np.asarray(gt)
    pred = resize_to(np.asarray(pred), gt.shape[-2:])
    p, single = _batch(pred)
    g, g_single = _batch(gt)
    if p.shape[0] != g.shape[0]:
        raise ValueError(f"prediction has {p.shape[0]} frames, ground truth {g.shape[0]}")
    return p, g, single and g_single


def _out(values: np.ndarray, single: bool) -> float | np.ndarray:
    return float(values[0]) if single else values


def _standardise(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std per row with the sample std (ddof=1, MATLAB ``std``); constant rows -> 0."""
    centred = x - x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, ddof=1, keepdims=True)
    # Test constancy exactly (max == min): the mean of equal floats may be off by an ulp,
    # and rounding noise divided by rounding noise is not a score.
    varies = x.max(axis=1, keepdims=True) > x.min(axis=1, keepdims=True)
    return np.divide(centred, std, out=np.zeros_like(centred), where=varies & (std > 0))


def _min_max(x: np.ndarray) -> np.ndarray:
    """Scale each row to [0, 1]; a constant row becomes all zeros instead of 0/0."""
    lo = x.min(axis=1, keepdims=True)
    span = x.max(axis=1, keepdims=True) - lo
    return np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)


def nss(pred: np.ndarray, fixations: np.ndarray) -> float | np.ndarray:
    """Normalized Scanpath Saliency: mean of the standardised prediction at fixated pixels.

    ``NSS.m``: ``map = (map - mean) / std`` (sample std), then the mean at ``fixationMap > 0``.
    Chance is 0; a constant prediction scores exactly 0; a frame without fixations is NaN.
    """
    p, f, single = _pair(pred, fixations)
    fix = f > 0
    n = fix.sum(axis=1)
    # mean(Pz at fixations) = (mean(P at fixations) - mean P) / std P: no need to build Pz.
    at_fix = np.where(fix, p, 0.0).sum(axis=1) / np.maximum(n, 1)
    mean, std = p.mean(axis=1), p.std(axis=1, ddof=1)
    varies = (p.max(axis=1) > p.min(axis=1)) & (std > 0)
    score = np.divide(at_fix - mean, std, out=np.zeros_like(mean), where=varies)
    return _out(np.where(n > 0, score, np.nan), single)


def cc(pred: np.ndarray, gt_map: np.ndarray) -> float | np.ndarray:
    """Pearson's linear correlation coefficient between prediction and continuous GT map.

    ``CC.m`` standardises both maps (sample std) and calls ``corr2``; that equals
    sum(a_z * b_z) / (N - 1). 1 for identical maps, 0 for unrelated ones; a constant map
    (either side) scores 0 where MATLAB would give NaN.
    """
    p, g, single = _pair(pred, gt_map)
    n = p.shape[1]
    return _out((_standardise(p) * _standardise(g)).sum(axis=1) / max(n - 1, 1), single)


def _as_distribution(x: np.ndarray) -> np.ndarray:
    """``similarity.m``'s normalisation: min-max to [0, 1], then divide by the sum.

    An all-zero map stays zero. A constant non-zero map (NaN in MATLAB) is taken as the
    uniform distribution, its natural limit.
    """
    flat_nonzero = np.any(x != 0, axis=1, keepdims=True)
    constant = (x.max(axis=1, keepdims=True) == x.min(axis=1, keepdims=True)) & flat_nonzero
    scaled = np.where(constant, 1.0, _min_max(x))
    total = scaled.sum(axis=1, keepdims=True)
    return np.divide(scaled, total, out=np.zeros_like(scaled), where=total > 0)


def sim(pred: np.ndarray, gt_map: np.ndarray) -> float | np.ndarray:
    """Similarity (histogram intersection): sum of the pixel-wise minimum of the two distributions.

    ``similarity.m``: each map min-max scaled to [0, 1] and divided by its sum, then
    ``sum(min(map1, map2))``. 1 for identical maps, 0 for disjoint ones.
    """
    p, g, single = _pair(pred, gt_map)
    return _out(np.minimum(_as_distribution(p), _as_distribution(g)).sum(axis=1), single)


def kld(pred: np.ndarray, gt_map: np.ndarray) -> float | np.ndarray:
    """Kullback-Leibler divergence of the prediction from the GT map (lower is better).

    ``KLdiv.m``: both maps divided by their sums (all-zero maps left as they are), then
    ``sum(gt * log(eps + gt / (pred + eps)))`` with MATLAB's eps. 0 for identical maps.
    """
    p, g, single = _pair(pred, gt_map)
    p_sum = p.sum(axis=1, keepdims=True)
    g_sum = g.sum(axis=1, keepdims=True)
    p = np.divide(p, p_sum, out=p.copy(), where=p_sum != 0)
    g = np.divide(g, g_sum, out=g.copy(), where=g_sum != 0)
    return _out((g * np.log(EPS + g / (p + EPS))).sum(axis=1), single)


def _auc_judd_one(s: np.ndarray, fix: np.ndarray) -> float:
    """AUC-Judd of one flattened map: ROC thresholds at the saliency values at fixations."""
    n_fix = int(fix.sum())
    n_other = s.size - n_fix
    if n_fix == 0 or n_other == 0:
        return float("nan")
    at_fix = np.sort(s[fix])  # ascending
    others = np.sort(s[~fix])
    thresholds = np.unique(at_fix)[::-1]  # descending, one point per distinct value
    # Count of values >= each threshold, via binary search in the sorted arrays.
    tp = (n_fix - np.searchsorted(at_fix, thresholds, side="left")) / n_fix
    fp = (n_other - np.searchsorted(others, thresholds, side="left")) / n_other
    tp = np.concatenate(([0.0], tp, [1.0]))
    fp = np.concatenate(([0.0], fp, [1.0]))
    return float(np.sum((fp[1:] - fp[:-1]) * (tp[1:] + tp[:-1]) / 2))


def auc_judd(pred: np.ndarray, fixations: np.ndarray) -> float | np.ndarray:
    """AUC-Judd: area under the ROC of fixated vs. all non-fixated pixels.

    ``AUC_Judd.m`` sweeps a threshold through the prediction's values at the fixations
    (descending): true-positive rate = fixations at or above it / fixations, false-positive
    rate = non-fixated pixels at or above it / non-fixated pixels, plus (0, 0) and (1, 1),
    integrated with the trapezoid rule. MATLAB adds random jitter (rand/1e7) to break ties;
    here tied fixation values share one ROC point instead, which is deterministic, equals
    the MATLAB score whenever the values at fixations are distinct, and gives a constant map
    exactly 0.5. The min-max normalisation of the MATLAB code does not change the ranking
    and is skipped.
    """
    p, f, single = _pair(pred, fixations)
    fix = f > 0
    return _out(np.array([_auc_judd_one(p[i], fix[i]) for i in range(p.shape[0])]), single)


def auc_shuffled(
    pred: np.ndarray,
    fixations: np.ndarray,
    other: np.ndarray,
    *,
    n_splits: int = 100,
    step: float = 0.1,
    seed: int | np.random.Generator | None = 0,
) -> float:
    """Shuffled AUC (s-AUC, Borji): fixations against fixations taken from other frames.

    ``AUC_shuffled.m``: the prediction is min-max normalised; for each of ``n_splits``
    splits, min(#fixations, #other) negatives are drawn without replacement from the
    pixels fixated in ``other`` (the union of other frames' fixations, which carries the
    dataset's centre bias); thresholds sweep 0, step, ... up to the maximum; TPR and FPR as
    in AUC-Judd but over the drawn negatives; the trapezoid areas are averaged over splits.
    MATLAB draws with the global ``randperm``; here ``seed`` fixes the draws. One frame
    (H x W) per call, since each frame has its own ``other`` map. NaN without fixations or
    without other fixations.
    """
    p, f, _ = _pair(pred, fixations)
    o = np.asarray(other)
    if o.shape != np.asarray(fixations).shape[-2:] or p.shape[0] != 1:
        raise ValueError("auc_shuffled scores one frame: pred, fixations and other must be single maps of one size")
    s = _min_max(p)[0]
    at_fix = s[f[0] > 0]
    candidates = np.flatnonzero(o.reshape(-1) > 0)
    if at_fix.size == 0 or candidates.size == 0:
        return float("nan")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n_neg = min(at_fix.size, candidates.size)
    # One random permutation of the candidates per split; keep the first n_neg of each.
    order = np.argsort(rng.random((n_splits, candidates.size)), axis=1)[:, :n_neg]
    negatives = s[candidates[order]]  # (n_splits, n_neg)
    # Values are in [0, 1]: thresholds above a split's maximum only add (0, 0) points,
    # which add no area, so one fixed grid serves every split.
    thresholds = np.round(np.arange(int(np.floor(1.0 / step + 1e-9)), -1, -1) * step, 12)
    tp = (at_fix[None, :] >= thresholds[:, None]).mean(axis=1)  # (K,)
    fp = (negatives[:, None, :] >= thresholds[None, :, None]).mean(axis=2)  # (n_splits, K)
    tp = np.concatenate(([0.0], tp, [1.0]))
    fp = np.concatenate((np.zeros((n_splits, 1)), fp, np.ones((n_splits, 1))), axis=1)
    areas = ((fp[:, 1:] - fp[:, :-1]) * (tp[None, 1:] + tp[None, :-1]) / 2).sum(axis=1)
    return float(areas.mean())
