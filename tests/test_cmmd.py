"""CMMD: an exact high-precision case, an independent direct N×N computation, the authors' formula (numpy in
float64 and float32, and JAX as they run it), properties (identical sets, symmetry, order, tiling), bad input.

The authors' conventions (google-research/google-research ``cmmd/distance.py``): k(a, b) =
exp(-‖a - b‖² / (2·10²)); each of k_xx, k_yy, k_xy averaged over the full matrix, diagonal included (the
biased estimator); times 1000; float32. The formula is written here from that description.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_runtime

from fidkit.cmmd import cmmd
from fidkit.errors import InputError

#: Float64 agreement promised by issue 16 between fidkit's blockwise sums and a direct N×N computation.
DIRECT_RTOL = 1e-10
#: Tiling, row order and argument order change only the order of float64 summation.
ORDER_RTOL = 1e-12
#: |authors' float32 CMMD - float64 CMMD| in CMMD units (scale 1000), for unit-norm embeddings, d = 768.
#: Each of their four kernel means is a float32 sum of n·m values near 1: pairwise summation keeps its
#: error near (a few)·u32 = a few 6e-8, and the float32 Gram expansion adds ≤ gamma·(d+3)·u32·4 ≈ 1e-6 per
#: kernel value before averaging; times 4 terms and 1000, a few 1e-4 in the bad case. Measured 3e-5..1e-4
#: (numpy and JAX, n = 512 and 2048); 1e-3 keeps a 10x margin and still separates the unbiased estimator
#: (2e-2 away at n = 512) and any other sigma.
FLOAT32_ATOL = 1e-3


def _clip_like(rng: np.random.Generator, n: int, d: int = 768, shift: float = 0.0) -> np.ndarray:
    """Unit-norm rows around a common direction (pairwise cosines ~0.5, as CLIP image embeddings)."""
    e = rng.standard_normal((n, d)) / np.sqrt(d)
    e[:, 0] += 1.0
    e[:, 1] += shift
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _direct_mmd2(x: np.ndarray, y: np.ndarray, sigma: float, unbiased: bool = False) -> float:
    """MMD² from the three full kernel matrices, distances from explicit differences (no Gram expansion)."""
    def kernel(a, b):
        diff = a[:, None, :] - b[None, :, :]
        return np.exp(-np.einsum("ijk,ijk->ij", diff, diff) / (2.0 * sigma**2))

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    if unbiased:
        n, m = len(x), len(y)
        return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                - 2.0 * kxy.mean())
    return kxx.mean() + kyy.mean() - 2.0 * kxy.mean()


def _authors_formula(x: np.ndarray, y: np.ndarray, dtype: type) -> float:
    """cmmd/distance.py's computation as described there, in numpy at ``dtype``: squared norms from the
    diagonal of the Gram matrix, -2 a·b + ‖a‖² + ‖b‖², exp(-gamma ·), full-matrix means, times 1000."""
    x, y = x.astype(dtype), y.astype(dtype)
    gamma = dtype(1.0 / (2 * 10**2))

    def mean_kernel(a, b):
        a_sq, b_sq = np.diag(a @ a.T), np.diag(b @ b.T)
        return np.exp(-gamma * (-2 * (a @ b.T) + a_sq[:, None] + b_sq[None, :])).mean()

    return float(1000 * (mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y)))


def test_single_points_closed_form() -> None:
    a, b = np.array([[1.0, 2.0, -0.5]]), np.array([[0.0, 2.5, 1.0]])
    d2 = 1.0 + 0.25 + 2.25
    assert cmmd(a, b) == pytest.approx(1000 * (2 - 2 * math.exp(-d2 / 200)), rel=1e-14)


def test_high_precision_case() -> None:
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 4)) * 4, rng.standard_normal((5, 4)) * 4 + 1.0
    sigma = 3.0

    def mean_k(a, b, skip_diag):
        total, count = mpmath.mpf(0), 0
        for i, p in enumerate(a):
            for j, q in enumerate(b):
                if skip_diag and i == j:
                    continue
                d2 = sum((mpmath.mpf(float(u)) - mpmath.mpf(float(v))) ** 2 for u, v in zip(p, q, strict=True))
                total += mpmath.exp(-d2 / (2 * mpmath.mpf(sigma) ** 2))
                count += 1
        return total / count

    for unbiased in (False, True):
        exact = 1000 * (mean_k(x, x, unbiased) + mean_k(y, y, unbiased) - 2 * mean_k(x, y, False))
        # measured 3e-16 and 9e-16; 1e-12 leaves room for other BLAS kernels' order of summation
        assert cmmd(x, y, sigma=sigma, unbiased=unbiased) == pytest.approx(float(exact), rel=1e-12)

    # the paper's regime, kernel values 0.98..1: fidkit measured 3e-15 from exact, the direct float64
    # computation (which sums k, not k - 1) 4e-13
    x, y, sigma = _clip_like(rng, 12, d=32), _clip_like(rng, 10, d=32, shift=0.3), 10.0
    exact = 1000 * (mean_k(x, x, False) + mean_k(y, y, False) - 2 * mean_k(x, y, False))
    assert cmmd(x, y) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("case", ["gaussian", "clip-like", "unequal-sizes"])
def test_matches_direct_computation(case: str, unbiased: bool) -> None:
    rng = np.random.default_rng(1)
    if case == "gaussian":  # distances comparable to sigma: kernel values spread over (0, 1]
        x, y, sigma = rng.standard_normal((80, 16)) * 3, rng.standard_normal((80, 16)) * 3 + 0.7, 10.0
    elif case == "clip-like":  # the paper's regime: unit vectors, kernel values 0.98..1
        x, y, sigma = _clip_like(rng, 120), _clip_like(rng, 120, shift=0.3), 10.0
    else:
        x, y, sigma = rng.standard_normal((37, 9)), rng.standard_normal((90, 9)) * 1.3, 2.0
    expected = 1000 * _direct_mmd2(x, y, sigma, unbiased)
    for block_size in (None, 1, 16, 50):
        assert cmmd(x, y, sigma=sigma, unbiased=unbiased, block_size=block_size) == pytest.approx(
            expected, rel=DIRECT_RTOL)


def test_matches_authors_formula_float64_and_float32() -> None:
    rng = np.random.default_rng(2)
    for shift in (0.2, 0.4):
        x, y = _clip_like(rng, 512), _clip_like(rng, 400, shift=shift)
        value = cmmd(x, y)
        assert value == pytest.approx(_authors_formula(x, y, np.float64), rel=DIRECT_RTOL)
        assert abs(_authors_formula(x, y, np.float32) - value) < FLOAT32_ATOL
        assert abs(cmmd(x, y, unbiased=True) - value) > 10 * FLOAT32_ATOL  # the check can tell them apart


@pytest.mark.jax
def test_matches_authors_formula_run_in_jax() -> None:
    """Their computation as they run it: jitted JAX in float32 (their embeddings are float32, x64 off)."""
    require_runtime("jax")
    import jax
    import jax.numpy as jnp

    @jax.jit
    def authors_mmd(x, y):
        gamma = 1 / (2 * 10**2)

        def mean_kernel(a, b):
            a_sq, b_sq = jnp.diag(a @ a.T), jnp.diag(b @ b.T)
            return jnp.mean(jnp.exp(-gamma * (-2 * (a @ b.T) + a_sq[:, None] + b_sq[None, :])))

        return 1000 * (mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y))

    rng = np.random.default_rng(3)
    x, y = _clip_like(rng, 1024).astype(np.float32), _clip_like(rng, 1024, shift=0.4).astype(np.float32)
    theirs = authors_mmd(jnp.asarray(x), jnp.asarray(y))  # float32 inputs, weakly typed constants
    assert theirs.dtype == jnp.float32
    assert abs(float(theirs) - cmmd(x, y)) < FLOAT32_ATOL


def test_identical_sets_and_nonnegativity() -> None:
    rng = np.random.default_rng(4)
    x = _clip_like(rng, 100)
    assert abs(cmmd(x, x)) < 1e-12  # biased estimator: exactly 0 in exact arithmetic
    assert abs(cmmd(x, x.copy(), block_size=37)) < 1e-12
    # unbiased: k_xx's mean over i != j is below the full mean (the diagonal is 1), so identical sets go negative
    assert cmmd(x, x, unbiased=True) == pytest.approx(1000 * _direct_mmd2(x, x, 10.0, unbiased=True),
                                                       rel=DIRECT_RTOL)
    assert cmmd(x, x, unbiased=True) < 0
    for shift in (0.0, 0.01, 0.1):
        assert cmmd(x, _clip_like(rng, 200, shift=shift)) > 0  # a squared RKHS norm


def test_symmetry_order_and_tiling() -> None:
    rng = np.random.default_rng(5)
    x, y = _clip_like(rng, 200, d=64), _clip_like(rng, 133, d=64, shift=0.2)
    ref = cmmd(x, y)
    for unbiased in (False, True):
        base = cmmd(x, y, unbiased=unbiased)
        assert cmmd(y, x, unbiased=unbiased) == pytest.approx(base, rel=ORDER_RTOL)
        assert cmmd(x[rng.permutation(len(x))], y[rng.permutation(len(y))], unbiased=unbiased) == pytest.approx(
            base, rel=ORDER_RTOL)
        for block_size in (1, 2, 63, 199, 200, 10_000):
            assert cmmd(x, y, unbiased=unbiased, block_size=block_size) == pytest.approx(base, rel=ORDER_RTOL)
    assert cmmd(x.astype(np.float32), y) == cmmd(x.astype(np.float32).astype(np.float64), y)
    assert cmmd(x, y, scale=1.0) * 1000 == pytest.approx(ref, rel=1e-15)
    # sigma is in the embeddings' units: scaling both sets and sigma together changes nothing
    assert cmmd(x * 7.0, y * 7.0, sigma=70.0) == pytest.approx(ref, rel=ORDER_RTOL)
    # translation invariance (the pooled-mean shift makes the computation itself nearly invariant too)
    assert cmmd(x + 5.0, y + 5.0) == pytest.approx(ref, rel=1e-9)


def test_inputs_left_unchanged() -> None:
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((30, 5)) + 2.0, (rng.standard_normal((20, 5)) + 1.0).astype(np.float32)
    x0, y0 = x.copy(), y.copy()
    value = cmmd(x, y)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    assert cmmd(x.tolist(), y) == value
    assert cmmd(x[:, ::-1][:, ::-1], y) == value  # a view of the caller's memory is not shifted in place


def test_bad_input() -> None:
    x = np.zeros((10, 3))
    with pytest.raises(InputError, match=r"x: expected a 2-D array"):
        cmmd(np.zeros(10), x)
    with pytest.raises(InputError, match=r"y: expected a 2-D array"):
        cmmd(x, np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="feature dimension 3 but y has 4"):
        cmmd(x, np.zeros((10, 4)))
    bad = x.copy()
    bad[4, 1] = np.nan
    with pytest.raises(InputError, match=r"y: expected finite values.*NaN at index \(4, 1\)"):
        cmmd(x, bad)
    bad[4, 1] = np.inf
    with pytest.raises(InputError, match=r"x: expected finite values.*inf"):
        cmmd(bad, x)
    with pytest.raises(InputError, match="at least 1 samples, received 0"):
        cmmd(np.zeros((0, 3)), x)
    with pytest.raises(InputError, match="at least 2 samples, received 1"):
        cmmd(x, np.zeros((1, 3)), unbiased=True)
    with pytest.raises(InputError, match="numeric array"):
        cmmd(np.array([["a", "b"]]), x)
    with pytest.raises(InputError, match="real array"):
        cmmd(x + 1j, x)
    for sigma in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="sigma > 0"):
            cmmd(x, x, sigma=sigma)
    for sigma in (True, "10", None):
        with pytest.raises(InputError, match="sigma to be a positive number"):
            cmmd(x, x, sigma=sigma)
    with pytest.raises(InputError, match="scale > 0"):
        cmmd(x, x, scale=0.0)
    for block_size in (0, -5, 2.5):
        with pytest.raises(InputError, match="block_size"):
            cmmd(x, x, block_size=block_size)


# --------------------------------------------------------- CMMD in the metric registry: score and the CLI


def test_cmmd_through_score_and_the_command_line(tmp_path, capsys) -> None:
    """`fidkit.score(metrics=("cmmd",))` and ``fidkit score --metrics fid,cmmd`` give `fidkit.cmmd.cmmd`'s
    number, which is the direct N×N float64 computation; sigma/scale options on both routes."""
    import json
    import warnings

    import fidkit
    from fidkit.cli import main

    rng = np.random.default_rng(21)
    x, y = _clip_like(rng, 60, d=32), _clip_like(rng, 45, d=32, shift=0.3)
    direct = 1000.0 * _direct_mmd2(x, y, 10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fidkit.FidkitWarning)  # unknown provenance of bare arrays
        out = fidkit.score(x, y, metrics=("cmmd",), bootstrap=0)
        wide = fidkit.score(x, y, metrics="cmmd", cmmd_sigma=2.5, cmmd_scale=1.0, bootstrap=0)
    assert out["cmmd"] == pytest.approx(cmmd(x, y), rel=ORDER_RTOL)
    assert out["cmmd"] == pytest.approx(direct, rel=DIRECT_RTOL)
    assert out["settings"]["cmmd"] == {"sigma": 10.0, "scale": 1000.0}
    assert any(n.startswith("CMMD: on unknown features, not CLIP ViT-L/14@336px") for n in out["notes"])
    assert wide["cmmd"] == pytest.approx(_direct_mmd2(x, y, 2.5), rel=DIRECT_RTOL)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    argv = ["score", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--metrics", "fid,cmmd", "--bootstrap", "0"]
    assert main([*argv, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["cmmd"] == pytest.approx(direct, rel=DIRECT_RTOL) and "fid" in cli
    assert main([*argv, "--cmmd-sigma", "2.5", "--cmmd-scale", "1"]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith("CMMD"))
    assert line.endswith("(sigma 2.5, scale 1)")
    assert float(line.split()[1]) == pytest.approx(_direct_mmd2(x, y, 2.5), rel=1e-5)  # printed to 6 digits


def test_cmmd_needs_features_on_both_sides(tmp_path) -> None:
    import fidkit

    x = _clip_like(np.random.default_rng(2), 30, d=8)
    stats = fidkit.Stats.from_features(x).save(tmp_path / "s.npz")
    with pytest.raises(InputError, match="real: cmmd needs features, but only mean/covariance statistics"):
        fidkit.score(stats, x, "cmmd", bootstrap=0)
