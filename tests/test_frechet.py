"""Fréchet distance: exact constructions, high precision, pytorch-fid, properties and bad input."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fidkit.errors import FidkitWarning, InputError
from fidkit.frechet import (
    FrechetReference,
    frechet_distance,
    frechet_distance_features,
    trace_sqrt_product_features,
)


def _factors(d: int, r1: int, r2: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((d, r1)) * scale, rng.standard_normal((d, r2)) * scale


def _nuclear(a: np.ndarray, b: np.ndarray) -> float:
    """tr sqrt(A Aᵀ B Bᵀ) = ||Aᵀ B||_* : exact, computed without ever forming a covariance."""
    return float(np.linalg.svd(a.T @ b, compute_uv=False).sum())


def _check_construction(d: int, r1: int, r2: int, scale: float, seed: int = 0) -> None:
    a, b = _factors(d, r1, r2, scale, seed)
    s1, s2 = a @ a.T, b @ b.T
    exact = _nuclear(a, b)
    rtol = 1e-10 if min(r1, r2) >= d else 1e-7
    got = FrechetReference(np.zeros(d), s1).trace_sqrt(s2)
    assert got == pytest.approx(exact, rel=rtol)
    mu1 = np.linspace(-1, 1, d) * scale
    expected = float(mu1 @ mu1) + np.trace(s1) + np.trace(s2) - 2 * exact
    assert frechet_distance(mu1, s1, np.zeros(d), s2) == pytest.approx(expected, rel=rtol)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e6])
@pytest.mark.parametrize(("d", "r1", "r2"), [(40, 45, 47), (40, 10, 47), (40, 47, 10), (40, 10, 10),
                                             (256, 261, 300), (256, 10, 85), (256, 128, 261)])
def test_exact_construction_nuclear_norm(d: int, r1: int, r2: int, scale: float) -> None:
    _check_construction(d, r1, r2, scale)


@pytest.mark.slow
@pytest.mark.parametrize(("r1", "r2", "scale"), [(2100, 2100, 1e-3), (10, 2100, 1e6), (2100, 10, 1.0)])
def test_exact_construction_d2048(r1: int, r2: int, scale: float) -> None:
    _check_construction(2048, r1, r2, scale, seed=7)


def test_mixed_feature_scales_full_rank() -> None:
    rng = np.random.default_rng(3)
    d = 60
    scales = np.logspace(-3, 2, d)  # per-feature scales; covariance condition number ~1e10
    a = scales[:, None] * rng.standard_normal((d, d + 20))
    b = scales[:, None] * rng.standard_normal((d, d + 20))
    got = FrechetReference(np.zeros(d), a @ a.T).trace_sqrt(b @ b.T)
    assert got == pytest.approx(_nuclear(a, b), rel=1e-10)


def _mp_frechet(mu1, s1, mu2, s2) -> mpmath.mpf:
    with mpmath.workdps(50):
        m1, m2 = mpmath.matrix(s1.tolist()), mpmath.matrix(s2.tolist())
        r = mpmath.sqrtm(m1)
        ev = mpmath.eigsy(r * m2 * r, eigvals_only=True)
        tr_sqrt = sum(mpmath.sqrt(max(e, 0)) for e in ev)
        diff = sum((mpmath.mpf(x) - mpmath.mpf(y)) ** 2 for x, y in zip(mu1, mu2, strict=True))
        tr = sum(m1[i, i] + m2[i, i] for i in range(m1.rows))
        return diff + tr - 2 * tr_sqrt


def test_against_mpmath_small() -> None:
    rng = np.random.default_rng(11)
    d = 6
    a, b = rng.standard_normal((d, 9)), rng.standard_normal((d, 8)) * 3
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = float(_mp_frechet(mu1, a @ a.T, mu2, b @ b.T))
    assert frechet_distance(mu1, a @ a.T, mu2, b @ b.T) == pytest.approx(expected, rel=1e-12)


def test_analytic_commuting_diagonal() -> None:
    v1, v2 = np.array([1.0, 4.0, 9.0, 0.0]), np.array([4.0, 4.0, 1.0, 2.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-14)


@pytest.mark.peers
def test_matches_pytorch_fid_well_conditioned() -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(5)
    for d in (16, 64):
        a, b = rng.standard_normal((d, 2 * d)) / np.sqrt(d), rng.standard_normal((d, 2 * d)) / np.sqrt(d)
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.1
        s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T
        peer = float(calculate_frechet_distance(mu1, s1, mu2, s2))
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(peer, rel=1e-9)


def _cov_strategy(d: int):
    return arrays(np.float64, (d, d + 1), elements=st.floats(-10, 10, allow_nan=False, width=64))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6).flatmap(lambda d: st.tuples(_cov_strategy(d), _cov_strategy(d),
                                                     arrays(np.float64, d, elements=st.floats(-5, 5)))))
def test_properties(args) -> None:
    a, b, mu = args
    s1, s2 = a @ a.T, b @ b.T
    scale = max(np.trace(s1) + np.trace(s2), 1e-300)
    ab = frechet_distance(mu, s1, np.zeros_like(mu), s2)
    ba = frechet_distance(np.zeros_like(mu), s2, mu, s1)
    assert ab >= 0 and ba >= 0
    assert abs(ab - ba) <= 1e-9 * (scale + float(mu @ mu))
    assert frechet_distance(mu, s1, mu, s1) <= 1e-9 * scale
    assert ab >= float(mu @ mu) - 1e-9 * (scale + float(mu @ mu))  # the covariance part is >= 0


def test_reference_reuse_matches_function() -> None:
    rng = np.random.default_rng(2)
    d = 30
    a = rng.standard_normal((d, 50))
    ref = FrechetReference(np.ones(d), a @ a.T)
    assert ref.rank == d and "rank=30" in repr(ref)
    for seed in range(3):
        b = np.random.default_rng(seed).standard_normal((d, 40))
        mu = np.full(d, seed, dtype=float)
        assert ref.distance(mu, b @ b.T) == pytest.approx(frechet_distance(np.ones(d), a @ a.T, mu, b @ b.T),
                                                          rel=1e-13)


def test_reference_rank_deficient_keeps_rank() -> None:
    a, b = _factors(50, 10, 60, 1.0, 4)
    ref = FrechetReference(np.zeros(50), a @ a.T)
    assert ref.rank == 10
    assert ref.trace_sqrt(b @ b.T) == pytest.approx(_nuclear(a, b), rel=1e-10)


def _mp_trace_sqrt_features(x1: np.ndarray, x2: np.ndarray) -> float:
    """Sum of sqrt of the eigenvalues of the d×d product S1 S2 (general eigenproblem, 40 digits)."""
    with mpmath.workdps(40):
        c1 = mpmath.matrix((x1 - x1.mean(0)).tolist())
        c2 = mpmath.matrix((x2 - x2.mean(0)).tolist())
        s1 = c1.T * c1 / (x1.shape[0] - 1)
        s2 = c2.T * c2 / (x2.shape[0] - 1)
        ev = mpmath.eig(s1 * s2, left=False, right=False)
        return float(sum(mpmath.sqrt(max(mpmath.re(e), 0)) for e in ev))


def test_features_small_n_against_mpmath() -> None:
    rng = np.random.default_rng(9)
    x1, x2 = rng.standard_normal((5, 9)), rng.standard_normal((4, 9)) * 2 + 1
    assert trace_sqrt_product_features(x1, x2) == pytest.approx(_mp_trace_sqrt_features(x1, x2), rel=1e-10)


def test_features_routes_agree() -> None:
    rng = np.random.default_rng(10)
    d = 64
    x1, x2 = rng.standard_normal((40, d)), rng.standard_normal((50, d)) * 1.5 + 0.3
    with pytest.warns(FidkitWarning) as rec:
        gram = frechet_distance_features(x1, x2)
    assert ["rank at most 39" in str(w.message) for w in rec] == [True, False]
    assert "x2: 50 samples" in str(rec[1].message)
    cov = frechet_distance(x1.mean(0), np.cov(x1, rowvar=False), x2.mean(0), np.cov(x2, rowvar=False))
    assert gram == pytest.approx(cov, rel=1e-7)
    ref = FrechetReference(x1.mean(0), np.cov(x1, rowvar=False))
    assert ref.distance_features(x2, warn=False) == pytest.approx(gram, rel=1e-10)
    big1, big2 = rng.standard_normal((200, 8)), rng.standard_normal((300, 8))
    with pytest.warns(FidkitWarning, match="biased upwards") as rec:
        full = frechet_distance_features(big1, big2)
    assert len(rec) == 2 and "at least 10,000" in str(rec[0].message)
    assert full == pytest.approx(frechet_distance(big1.mean(0), np.cov(big1, rowvar=False), big2.mean(0),
                                                  np.cov(big2, rowvar=False)), rel=1e-12)
    ref8 = FrechetReference(big1.mean(0), np.cov(big1, rowvar=False))
    assert ref8.distance_features(big2, warn=False) == pytest.approx(full, rel=1e-12)


@pytest.mark.parametrize(("args", "match"), [
    ((np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2)), "mu1.*NaN"),
    ((np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, np.inf])), "sigma2.*inf"),
    ((np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)), "dimension 3"),
    ((np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), r"shape \(2, 2\)"),
    ((np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2)), "sigma1.*symmetric"),
    ((np.zeros(2), np.eye(2), np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]])), "sigma2.*positive semi"),
    ((np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]), np.zeros(2), np.eye(2)), "sigma1.*positive semi"),
    ((np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2)), "sigma1.*positive semi"),
    ((np.zeros((2, 1)), np.eye(2), np.zeros(2), np.eye(2)), r"mean vector"),
    ((np.zeros(2), np.eye(2).astype(complex), np.zeros(2), np.eye(2)), "real array"),
])
def test_bad_input(args, match: str) -> None:
    with pytest.raises(InputError, match=match):
        frechet_distance(*args)


def test_bad_features() -> None:
    with pytest.raises(InputError, match="at least 2 samples"):
        frechet_distance_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(InputError, match="2-D"):
        frechet_distance_features(np.zeros(3), np.zeros((5, 3)))
    with pytest.raises(InputError, match="feature dimension 3 but x2 has 4"):
        frechet_distance_features(np.zeros((5, 3)), np.zeros((5, 4)))
    x = np.zeros((5, 3))
    x[2, 1] = np.nan
    with pytest.raises(InputError, match=r"x1.*NaN at index \(2, 1\)"):
        frechet_distance_features(x, np.zeros((5, 3)))


def test_rounding_level_asymmetry_and_negatives_accepted() -> None:
    a, b = _factors(20, 30, 30, 1.0, 12)
    s1 = a @ a.T
    noisy = (s1 + 1e-9 * np.triu(np.ones_like(s1))).astype(np.float32).astype(np.float64)
    assert frechet_distance(np.zeros(20), noisy, np.zeros(20), b @ b.T) == pytest.approx(
        frechet_distance(np.zeros(20), s1, np.zeros(20), b @ b.T), rel=1e-5)
    low_rank = _factors(20, 3, 3, 1.0, 13)[0]
    w, v = np.linalg.eigh(low_rank @ low_rank.T)
    w[:-3] = -1e-9 * w[-1]  # rounding-level negatives in the null space are clamped, not rejected
    s_neg = (v * w) @ v.T
    assert frechet_distance(np.zeros(20), s_neg, np.zeros(20), s_neg) == pytest.approx(0.0, abs=1e-6)


def _routes(x1: np.ndarray, x2: np.ndarray) -> dict[str, float]:
    """The four public routes to one distance, from the same features."""
    m1, s1 = x1.mean(0), np.cov(x1, rowvar=False)
    m2, s2 = x2.mean(0), np.cov(x2, rowvar=False)
    ref = FrechetReference(m1, s1)
    return {"frechet_distance": frechet_distance(m1, s1, m2, s2),
            "FrechetReference.distance": ref.distance(m2, s2),
            "FrechetReference.distance_features": ref.distance_features(x2, warn=False),
            "frechet_distance_features": frechet_distance_features(x1, x2, warn=False)}


@pytest.mark.parametrize(("d", "n1", "n2"), [(12, 200, 300), (48, 30, 40), (48, 30, 400), (48, 400, 30)])
@pytest.mark.parametrize("seed", [0, 1])
def test_four_routes_agree(d: int, n1: int, n2: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scales = np.logspace(-1, 1, d)
    x1 = rng.standard_normal((n1, d)) * scales + rng.standard_normal(d)
    x2 = rng.standard_normal((n2, d)) * scales * 1.2 + rng.standard_normal(d)
    got = _routes(x1, x2)
    first = got["frechet_distance"]
    assert first > 0 and all(isinstance(v, float) for v in got.values())
    for route, value in got.items():
        assert value == pytest.approx(first, rel=1e-12), route


@pytest.mark.parametrize(("d", "n"), [(5, 100), (48, 30), (48, 400), (256, 300)])
def test_identical_inputs_give_exactly_zero_on_every_route(d: int, n: int) -> None:
    rng = np.random.default_rng(d + n)
    x = rng.standard_normal((n, d)) * np.logspace(-2, 2, d) + 10.0
    got = _routes(x, x)
    got["copies"] = frechet_distance(x.mean(0), np.cov(x, rowvar=False), x.mean(0).copy(),
                                     np.cov(x, rowvar=False).copy())
    assert got == dict.fromkeys(got, 0.0)


def test_values_above_the_rounding_floor_are_kept() -> None:
    d = 4
    for shift in (1e-6, 1e-5, 1e-3):
        mu2 = np.full(d, shift)
        expected = d * shift**2  # identical covariances: only the mean term remains
        assert frechet_distance(np.zeros(d), np.eye(d), mu2, np.eye(d)) == pytest.approx(expected, rel=1e-6)


def _rank_deficient_cov(d: int = 64, n: int = 20, seed: int = 4) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)) * np.linspace(0.5, 2.0, d)
    return np.cov(x, rowvar=False)


def test_float16_covariance_accepted_with_a_warning_that_bounds_the_cost() -> None:
    s1 = _rank_deficient_cov()
    s2 = _rank_deficient_cov(seed=5) + 0.1 * np.eye(64)
    mu1, mu2 = np.zeros(64), np.full(64, 0.3)
    s16 = s1.astype(np.float16)
    with pytest.raises(InputError, match="not positive semi-definite"):
        frechet_distance(mu1, s16.astype(np.float64), mu2, s2)  # in float64 the rounding is not rounding
    exact = frechet_distance(mu1, s1, mu2, s2)
    with pytest.warns(FidkitWarning, match=r"sigma1: stored as float16 \(about 3 significant digits\); \d+ "
                                           r"eigenvalues down to -[\d.e-]+, within that rounding, were set "
                                           r"to 0; that rounding can move √FID") as rec:
        got = frechet_distance(mu1, s16, mu2, s2)
    bound = float(str(rec[0].message).split("by up to ")[1].split(" ")[0])
    assert abs(np.sqrt(got) - np.sqrt(exact)) <= bound
    assert abs(got - exact) > 0  # the rounding is real; the bound covers it
    with pytest.warns(FidkitWarning, match="float16"):
        assert FrechetReference(mu1, s16).distance(mu2, s2) == got


def test_float16_does_not_excuse_a_matrix_that_is_not_psd() -> None:
    with pytest.raises(InputError, match=r"sigma2: not positive semi-definite even allowing for float16"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]], np.float16))
    d = 32
    q = np.linalg.qr(np.random.default_rng(6).standard_normal((d, d)))[0]
    w = np.linspace(0.0, 1.0, d)
    bound = np.finfo(np.float16).eps / 2 * np.linalg.norm(w)  # u ||S||_F: the most rounding moves an eigenvalue
    w[0] = -3 * bound
    with pytest.raises(InputError, match="not positive semi-definite even allowing for float16"):
        frechet_distance(np.zeros(d), ((q * w) @ q.T).astype(np.float16), np.zeros(d), np.eye(d))
