"""Metrics: hand-computed cases, the standard identities, and independent cross-checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tased_batch.analysis import metrics as M


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _fixations(rng, shape=(24, 40), n=12) -> np.ndarray:
    fix = np.zeros(shape, np.uint8)
    fix[rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)] = 255
    return fix


# ------------------------------------------------------------ hand-computed values


def test_nss_uses_sample_std():
    pred = np.array([[0.0, 1.0], [2.0, 3.0]])
    fix = np.array([[0, 0], [0, 1]])
    # mean 1.5, sample std sqrt(5/3); the population std would give 1.5/sqrt(1.25) = 1.342.
    assert M.nss(pred, fix) == pytest.approx(1.5 / math.sqrt(5 / 3))


def test_cc_hand_value():
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    b = np.array([[1.0, 3.0, 2.0, 4.0]])
    # centred: (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): 4 / sqrt(5 * 5)
    assert M.cc(a, b) == pytest.approx(0.8)


def test_sim_hand_value():
    a = np.array([[0.0, 1.0, 2.0, 3.0]])  # -> (0, 1/6, 1/3, 1/2)
    b = np.array([[3.0, 2.0, 1.0, 0.0]])  # -> (1/2, 1/3, 1/6, 0)
    assert M.sim(a, b) == pytest.approx(1 / 3)


def test_kld_hand_value():
    pred = np.ones((1, 4))  # uniform: 1/4 each
    gt = np.array([[1.0, 0.0, 0.0, 0.0]])
    assert M.kld(pred, gt) == pytest.approx(math.log(4))


def test_auc_judd_hand_value():
    pred = np.array([[0.9, 0.1, 0.5], [0.3, 0.7, 0.2]])
    fix = np.array([[1, 0, 0], [1, 0, 0]])
    # thresholds 0.9 -> (fp 0, tp .5), 0.3 -> (fp 2/4, tp 1); with (0,0) and (1,1):
    # area = .5 * (.5 + 1) / 2 + .5 * 1 = 0.875 (not the Mann-Whitney 0.75).
    assert M.auc_judd(pred, fix) == pytest.approx(0.875)


def test_auc_shuffled_hand_value():
    pred = np.array([[0.0, 0.25, 0.5, 0.75, 1.0]])
    fix = np.array([[0, 0, 1, 0, 1]])
    other = np.array([[0, 1, 0, 1, 0]])  # as many negatives as fixations: every split draws both
    # ROC points (0,0) (0,.5) (.5,.5) (.5,1) (1,1): area .25 + .5
    assert M.auc_shuffled(pred, fix, other, n_splits=5) == pytest.approx(0.75)


# ------------------------------------------------------------ identities


def test_identities(rng):
    a = rng.random((24, 40))
    fix = _fixations(rng)
    assert M.cc(a, a) == pytest.approx(1.0)
    assert M.sim(a, a) == pytest.approx(1.0)
    assert abs(M.kld(a, a)) < 1e-12
    assert M.nss(np.full((24, 40), 0.3), fix) == 0.0
    assert M.auc_judd(np.full((24, 40), 0.3), fix) == pytest.approx(0.5)
    assert M.auc_judd(fix.astype(float), fix) > 0.99
    other = _fixations(rng, n=60)
    assert M.auc_shuffled(np.full((24, 40), 0.3), fix, other) == pytest.approx(0.5)
    assert M.cc(np.full((24, 40), 5.0), a) == 0.0


def test_scores_order_good_over_bad(rng):
    yy, xx = np.mgrid[0:24, 0:40]
    gt = np.exp(-((yy - 8) ** 2 + (xx - 30) ** 2) / 20.0)
    fix = np.zeros((24, 40))
    fix[7:10, 29:32] = 1
    wrong = np.exp(-((yy - 18) ** 2 + (xx - 6) ** 2) / 20.0)
    assert M.nss(gt, fix) > 2 > M.nss(wrong, fix)
    assert M.cc(gt, gt) > M.cc(wrong, gt)
    assert M.kld(gt, gt) < M.kld(wrong, gt)
    assert M.auc_judd(gt, fix) > 0.95 > 0.5 > M.auc_judd(wrong, fix)


def test_no_fixations_is_nan(rng):
    a = rng.random((24, 40))
    empty = np.zeros((24, 40))
    assert math.isnan(M.nss(a, empty))
    assert math.isnan(M.auc_judd(a, empty))
    assert math.isnan(M.auc_shuffled(a, empty, _fixations(rng)))


# ------------------------------------------------------------ cross-checks and batching


def _matlab_auc_judd(s: np.ndarray, f: np.ndarray) -> float:
    """Line-by-line transcription of the AUC_Judd.m loop (valid without ties)."""
    s, f = s.ravel(), f.ravel() > 0
    sth = np.sort(s[f])[::-1]
    n_fix, n_pix = sth.size, s.size
    tp, fp = [0.0], [0.0]
    for i, thresh in enumerate(sth, start=1):
        above = np.sum(s >= thresh)
        tp.append(i / n_fix)
        fp.append((above - i) / (n_pix - n_fix))
    tp.append(1.0)
    fp.append(1.0)
    return float(sum((fp[k + 1] - fp[k]) * (tp[k + 1] + tp[k]) / 2 for k in range(len(tp) - 1)))


def test_cross_checks(rng):
    a = rng.random((24, 40))
    b = rng.random((24, 40))
    fix = _fixations(rng)
    assert M.cc(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    z = (a - a.mean()) / a.std(ddof=1)
    assert M.nss(a, fix) == pytest.approx(z[fix > 0].mean())
    assert M.auc_judd(a, fix) == pytest.approx(_matlab_auc_judd(a, fix))
    p, g = a / a.sum(), b / b.sum()
    assert M.kld(a, b) == pytest.approx(np.sum(g * np.log(g / p)), rel=1e-9)


def test_batch_matches_single_frames(rng):
    preds = rng.random((3, 24, 40))
    gts = rng.random((3, 24, 40))
    fixes = np.stack([_fixations(rng) for _ in range(3)])
    for name in ("nss", "auc_judd"):
        fn = getattr(M, name)
        np.testing.assert_allclose(fn(preds, fixes), [fn(p, f) for p, f in zip(preds, fixes)])
    for name in ("cc", "sim", "kld"):
        fn = getattr(M, name)
        np.testing.assert_allclose(fn(preds, gts), [fn(p, g) for p, g in zip(preds, gts)])


def test_prediction_is_resized_to_ground_truth(rng):
    small = (rng.random((12, 20)) * 255).astype(np.uint8)
    gt = rng.random((24, 40))
    resized = M.resize_to(small, (24, 40))
    assert resized.shape == (24, 40) and resized.dtype == np.uint8
    assert M.cc(small, gt) == pytest.approx(M.cc(resized, gt))
    assert M.resize_to(np.full((12, 20), 77, np.uint8), (24, 40)).tolist() == np.full((24, 40), 77).tolist()


def test_shuffled_auc_is_reproducible(rng):
    a = rng.random((24, 40))
    fix, other = _fixations(rng), _fixations(rng, n=80)
    assert M.auc_shuffled(a, fix, other, seed=3) == M.auc_shuffled(a, fix, other, seed=3)
    with pytest.raises(ValueError):
        M.auc_shuffled(np.stack([a, a]), np.stack([fix, fix]), other)
