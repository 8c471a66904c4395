"""Returns CMMD: the squared maximum mean discrepancy with a Gaussian RBF kernel, times 1000, in float64.

Reference: S. Jayasumana, S. Ramalingam, A. Veit, D. Glasner, A. Chakrabarti, S. Kumar, "Rethinking FID:
Towards a Better Evaluation Metric for Image Generation", CVPR 2024 (arXiv:2401.09603), on CLIP
ViT-L/14@336px image embeddings. The authors' code (google-research/google-research, ``cmmd/distance.py``,
function ``mmd``) fixes the conventions reproduced here:

- kernel k(a, b) = exp(-gamma ‖a - b‖²) with gamma = 1 / (2 sigma²), sigma = 10 (``_SIGMA``);
- the biased ("minimum-variance", V-statistic) estimator; their docstring cites Gretton et al. 2012
  (JMLR 13), eq. (5) and lemma 6 (biased and unbiased estimates are almost identical). Each of
  k_xx, k_yy, k_xy is the mean over the *full* matrix, diagonal included, so identical sets give 0 and
  the two sets may have different sizes; ``unbiased=True`` gives the U-statistic instead (diagonal
  excluded from k_xx and k_yy, not the authors' number);
- the result is multiplied by 1000 (``_SCALE``, "to make the metric more human readable");
- their computation is float32 (JAX's default; their embeddings are float32): this module computes in
  float64, which differs from theirs by their float32 rounding (``tests/test_cmmd.py`` measures it);
- the embeddings are L2-normalised by the extractor before the distance sees them (scenic's
  ``CLIP.__call__(..., normalize=True)`` in google-research/scenic,
  ``scenic/projects/baselines/clip/layers.py``, which ``cmmd/embedding.py`` calls). sigma = 10 was chosen
  for such unit vectors; this function does not normalise, check or warn: that is the extractor's job.

Memory and time. The three n×n / m×m / n×m kernel matrices are never formed: they are summed tile by
tile (``block_size`` × ``block_size`` float64, default 1024, 8 MB; two tiles live at a time), and k_xx,
k_yy use only the tiles on and above the diagonal, so the work is (n² + m²)/2 + n·m kernel values and
about 2·d flops each (N = 30,000, d = 768: 2.8·10¹² flops, dominated by the matrix products). Memory is
one float64 copy of each input (shifted in place when it is fidkit's own copy) plus O(block_size²).

Numerics (u = 2⁻⁵³). Both sets are first shifted by their pooled mean c, which leaves every distance
unchanged and shrinks the rows whose norms the Gram expansion loses digits to. Squared distances are
‖a‖² + ‖b‖² - 2 a·b of the shifted rows, clamped at 0, with the self-distance of a row set to exactly 0.
Each kernel value is summed as e = k - 1 = expm1(-gamma ‖a - b‖²): in the biased and the unbiased
estimator the constant 1s cancel exactly (1 + 1 - 2 = 0), so the sums carry no cancellation against the
leading 1 (kernel values are 0.98..1 for unit vectors: summing k itself loses about 2 more digits).
Tiles are summed pairwise by numpy and the tile sums exactly (``math.fsum``). The error of MMD² is then
at most about 16·gamma·(d + 3)·u·R² (the Gram expansion; R = the largest ‖row - c‖) plus
4·(log2(block_size²) + 3)·u·max|e| (rounding and summation, negligible): for unit vectors (R ≤ 2) at
d = 768, ≤ 3·10⁻¹⁴ in MMD², ≤ 3·10⁻¹¹ in CMMD units. That is a worst-case bound; typical errors are
~sqrt(d) times smaller (measured: 3·10⁻¹⁵ relative against mpmath, ``tests/test_cmmd.py``).
"""

from __future__ import annotations

import math

import numpy as np

from . import _validate
from .errors import InputError

#: The authors' kernel bandwidth (google-research ``cmmd/distance.py``, ``_SIGMA``).
SIGMA = 10.0
#: The authors' scale factor applied to MMD² (``cmmd/distance.py``, ``_SCALE``).
SCALE = 1000.0
#: Default rows (and columns) per kernel tile: 1024² float64 = 8 MB per tile, large enough for the matrix
#: product to run at the BLAS's full speed, small enough to stay near the cache for the elementwise passes.
BLOCK_SIZE = 1024


def _sq_norms(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a)


def _tile_sum(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray, gamma: float,
              same: bool) -> float:
    """Returns sum over the tile of expm1(-gamma ‖a_i - b_j‖²); ``same``: a is b (zero self-distances)."""
    t = a @ b.T
    t *= -2.0
    t += a_sq[:, None]
    t += b_sq[None, :]
    np.maximum(t, 0.0, out=t)
    if same:
        np.fill_diagonal(t, 0.0)
    t *= -gamma
    np.expm1(t, out=t)
    return float(t.sum())


def _self_sum(a: np.ndarray, a_sq: np.ndarray, gamma: float, block: int) -> float:
    """Returns sum over all (i, j), diagonal included (where it is 0), of expm1(-gamma ‖a_i - a_j‖²)."""
    n = a.shape[0]
    parts = []
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        parts.append(_tile_sum(a[lo:hi], a_sq[lo:hi], a[lo:hi], a_sq[lo:hi], gamma, True))
        for clo in range(hi, n, block):
            chi = min(clo + block, n)
            parts.append(2.0 * _tile_sum(a[lo:hi], a_sq[lo:hi], a[clo:chi], a_sq[clo:chi], gamma, False))
    return math.fsum(parts)


def _cross_sum(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray, gamma: float,
               block: int) -> float:
    """Returns sum over all (i, j) of expm1(-gamma ‖a_i - b_j‖²)."""
    parts = []
    for lo in range(0, a.shape[0], block):
        hi = min(lo + block, a.shape[0])
        for clo in range(0, b.shape[0], block):
            chi = min(clo + block, b.shape[0])
            parts.append(_tile_sum(a[lo:hi], a_sq[lo:hi], b[clo:chi], b_sq[clo:chi], gamma, False))
    return math.fsum(parts)


def _shifted(f: np.ndarray, given: object, c: np.ndarray) -> np.ndarray:
    """Returns f - c, in place when ``f`` is fidkit's own float64 copy (not the caller's memory)."""
    if isinstance(given, np.ndarray) and np.shares_memory(f, given):
        return f - c
    f -= c
    return f


def _positive_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(f"CMMD: expected {name} to be a positive number, received {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"CMMD: expected a finite {name} > 0, received {value!r}")
    return v


def cmmd(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA, scale: float = SCALE, *,
         unbiased: bool = False, block_size: int | None = None) -> float:
    """Returns CMMD: ``scale`` × MMD² between ``x`` and ``y`` under k(a, b) = exp(-‖a - b‖² / (2 sigma²)).

    Jayasumana et al., "Rethinking FID", CVPR 2024; with the defaults the number is the authors'
    (google-research ``cmmd/distance.py``): the biased estimator (diagonal included), sigma 10, scale 1000.

    Args:
        x: (n, d) embeddings of one image set, any real dtype, computed in float64. For CMMD proper these
            are CLIP ViT-L/14@336px image embeddings (d = 768), L2-normalised by the extractor; this
            function uses the rows as given (it neither normalises nor checks norms).
        y: (m, d) embeddings of the other set; m may differ from n. CMMD is symmetric in x and y.
        sigma: kernel bandwidth, in the embeddings' units (gamma = 1 / (2 sigma²)); > 0.
        scale: factor applied to MMD² (the authors' 1000); > 0.
        unbiased: False (default, the authors'): mean over all pairs in k_xx and k_yy, diagonal included;
            0 for identical sets, ≥ 0 always. True: the unbiased U-statistic (pairs i ≠ j only); can be
            slightly negative, needs n, m ≥ 2.
        block_size: rows and columns per kernel tile (default `BLOCK_SIZE`, 8 MB tiles); changes only
            the order of summation (values agree to ~1e-14 relative), not the estimator.

    Returns:
        The CMMD value as a Python float, in units of ``scale`` × (kernel units, dimensionless).

    Raises:
        InputError: x or y is not a 2-D finite real array, has no rows (fewer than 2 with
            ``unbiased=True``), their feature dimensions differ, sigma or scale is not a finite
            positive number, or block_size is not a positive integer.
    """
    fx = _validate.features(x, "x", min_samples=2 if unbiased else 1)
    fy = _validate.features(y, "y", min_samples=2 if unbiased else 1)
    _validate.same_dim(fx, fy, "x", "y")
    sigma = _positive_float(sigma, "sigma")
    scale = _positive_float(scale, "scale")
    block = BLOCK_SIZE if block_size is None else _validate.positive_int(block_size, "block_size")
    n, m = fx.shape[0], fy.shape[0]
    gamma = 1.0 / (2.0 * sigma * sigma)

    # Distances are translation invariant; shifting by the pooled mean (the same c whichever set comes
    # first: x_sum + y_sum == y_sum + x_sum) only reduces the norms the Gram expansion loses digits to.
    c = (fx.sum(axis=0) + fy.sum(axis=0)) / (n + m)
    a, b = _shifted(fx, x, c), _shifted(fy, y, c)
    del fx, fy
    a_sq, b_sq = _sq_norms(a), _sq_norms(b)

    s_xx = _self_sum(a, a_sq, gamma, block)
    s_yy = _self_sum(b, b_sq, gamma, block)
    s_xy = _cross_sum(a, a_sq, b, b_sq, gamma, block)
    # k = 1 + e, and the diagonal's e is exactly 0, so for either estimator the 1s cancel and only the
    # divisors differ: n² (all pairs) or n(n - 1) (pairs i != j).
    nx, ny = (n * (n - 1), m * (m - 1)) if unbiased else (n * n, m * m)
    mmd2 = s_xx / nx + s_yy / ny - 2.0 * (s_xy / (n * m))
    return scale * mmd2
