"""Returns the squared Fréchet distance between Gaussians fitted to features (FID; Heusel et al. 2017).

    d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr( (S1^½ S2 S1^½)^½ )

Reference: M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017; the distance itself is
Dowson & Landau 1982, "The Fréchet distance between multivariate normal distributions".

How it is computed (float64 throughout, never complex): S1 is factored once by a symmetric eigenproblem,
S1 = F Fᵀ with F = V diag(sqrt(w)) restricted to the eigenvalues above the rounding floor; then
tr((S1^½ S2 S1^½)^½) is the sum of square roots of the eigenvalues of the symmetric PSD matrix Fᵀ S2 F
(same non-zero spectrum as S1 S2). Unlike ``scipy.linalg.sqrtm(S1 @ S2)`` (pytorch-fid), nothing
non-symmetric is square-rooted, no ``eps`` is added to the diagonal, and no imaginary part is dropped.

Clamping, stated once: eigenvalues that are negative by rounding (above ``-PSD_RTOL`` times the largest)
and eigenvalues below the rounding floor ``d * eps * largest`` are set to zero, since they cannot be told
apart from zero in float64; a clearly negative eigenvalue raises InputError instead. The final distance,
mathematically >= 0, is clamped at 0 when rounding makes it slightly negative.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from . import _validate
from .errors import InputError

#: Negative eigenvalues down to ``-PSD_RTOL`` times the largest are rounding (float32 storage of a
#: 2048-d covariance reaches a few 1e-6); below that the matrix is not a covariance.
PSD_RTOL = 1e-5

_EPS = np.finfo(np.float64).eps


def _sym_eigvals(m: np.ndarray) -> np.ndarray:
    """Returns the eigenvalues of the symmetric matrix ``m`` (lower triangle read), ascending."""
    if m.shape[0] == 0:
        return np.zeros(0)
    return scipy.linalg.eigh(m, eigvals_only=True, check_finite=False)


def _sqrt_clamped(eigvals: np.ndarray, floor: float) -> float:
    """Returns the sum of square roots of the eigenvalues above ``floor`` (the rest count as zero)."""
    return float(np.sum(np.sqrt(eigvals[eigvals > floor])))


class FrechetReference:
    """A reference Gaussian (mean, covariance) factored once, for many Fréchet distances against it.

    Building it costs one symmetric eigendecomposition of ``sigma`` (d³); each `distance` then costs two
    matrix products and one symmetric eigenvalue problem of size rank(sigma), and each
    `distance_features` with n <= d samples one product and one n×rank SVD. Use it to compute FID every
    epoch against fixed real-data statistics.
    """

    __slots__ = ("mu", "trace", "dim", "rank", "_factor", "_lam_max")

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, *, name: str = "reference") -> None:
        mu_arr, sigma_arr = _validate.mean_and_cov(mu, sigma, f"{name} mean", f"{name} covariance")
        d = mu_arr.shape[0]
        w, v = scipy.linalg.eigh(sigma_arr, check_finite=False)
        lam_max = float(max(w[-1], 0.0)) if d else 0.0
        if d and w[0] < -PSD_RTOL * lam_max:
            raise InputError(f"{name} covariance: not positive semi-definite: smallest eigenvalue {w[0]:.4g} "
                             f"vs largest {w[-1]:.4g} (beyond rounding, {PSD_RTOL:g} relative); "
                             "pass a covariance matrix, e.g. np.cov(features, rowvar=False)")
        keep = w > d * _EPS * lam_max
        self.mu = mu_arr
        self.mu.setflags(write=False)
        self.trace = float(np.trace(sigma_arr))
        self.dim = d
        self.rank = int(keep.sum())
        self._factor = np.ascontiguousarray(v[:, keep] * np.sqrt(w[keep]))
        self._lam_max = lam_max

    def __repr__(self) -> str:
        return f"FrechetReference(dim={self.dim}, rank={self.rank}, trace={self.trace:.6g})"

    def trace_sqrt(self, sigma: np.ndarray, *, name: str = "sigma") -> float:
        """Returns tr((S^½ sigma S^½)^½) for this reference's covariance S and a PSD ``sigma``."""
        s2 = _validate.covariance(sigma, name, self.dim)
        return self._trace_sqrt(s2, name)

    def _trace_sqrt(self, s2: np.ndarray, name: str) -> float:
        f = self._factor
        m = f.T @ (s2 @ f)
        m = 0.5 * (m + m.T)
        ev = _sym_eigvals(m)
        # The rounding of sigma (entrywise eps relative) moves eigenvalues of Fᵀ sigma F by up to about
        # eps * lam_max(S) * |sigma|_F; below that they are indistinguishable from zero.
        scale = self._lam_max * float(np.linalg.norm(s2))
        noise = self.dim * _EPS * scale
        if ev.size and ev[0] < -PSD_RTOL * scale:
            raise InputError(f"{name}: not positive semi-definite: S^½ {name} S^½ has eigenvalue {ev[0]:.4g} "
                             f"vs scale {scale:.4g} (beyond rounding); pass a covariance matrix")
        return _sqrt_clamped(ev, noise)

    def distance(self, mu: np.ndarray, sigma: np.ndarray, *, name: str = "sigma") -> float:
        """Returns the squared Fréchet distance between this reference and N(``mu``, ``sigma``)."""
        mu2, s2 = _validate.mean_and_cov(mu, sigma, f"{name} mean", name)
        if mu2.shape[0] != self.dim:
            raise InputError(f"{name} mean has dimension {mu2.shape[0]} but the reference has {self.dim}; "
                             "both must come from the same extractor layer")
        diff = self.mu - mu2
        value = float(diff @ diff) + self.trace + float(np.trace(s2)) - 2.0 * self._trace_sqrt(s2, name)
        return max(value, 0.0)

    def distance_features(self, features: np.ndarray, *, name: str = "features",
                          warn: bool = True) -> float:
        """Returns the squared Fréchet distance between this reference and the Gaussian fitted to ``features``.

        The covariance of ``features`` (N, d) is the unbiased one (divided by N - 1), as in pytorch-fid.
        With N <= d the N×N route is taken (singular values of the centred features times the factor),
        so a small sample costs N·d·rank, not d³. Warns when N is small (see `warn_sample_size`).
        """
        x = _validate.features(features, name)
        if x.shape[1] != self.dim:
            raise InputError(f"{name} has feature dimension {x.shape[1]} but the reference has {self.dim}; "
                             "both must come from the same extractor layer")
        if warn:
            _validate.warn_sample_size(x.shape[0], self.dim, name)
        return self._distance_features(x)

    def _distance_features(self, x: np.ndarray) -> float:
        n = x.shape[0]
        mu2 = x.mean(axis=0)
        xc = x - mu2
        diff = self.mu - mu2
        if n <= self.dim:
            s = scipy.linalg.svdvals(xc @ self._factor, check_finite=False) if self.rank else np.zeros(0)
            tr_sqrt = float(s.sum()) / np.sqrt(n - 1)
            tr2 = float(np.einsum("ij,ij->", xc, xc)) / (n - 1)
        else:
            s2 = (xc.T @ xc) / (n - 1)
            s2 = 0.5 * (s2 + s2.T)
            tr_sqrt = self._trace_sqrt(s2, "features covariance")
            tr2 = float(np.trace(s2))
        return max(float(diff @ diff) + self.trace + tr2 - 2.0 * tr_sqrt, 0.0)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Returns the squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID for Inception features).

    Exact for any symmetric PSD covariances, including rank-deficient ones; see the module docstring for
    the method and the clamping of rounding-level eigenvalues. Raises InputError for NaN/inf, mismatched
    shapes, non-symmetric or non-PSD covariances. For many distances against one reference, build a
    `FrechetReference` once.
    """
    ref = FrechetReference(mu1, sigma1, name="sigma1")
    mu2_arr, s2 = _validate.mean_and_cov(mu2, sigma2, "mu2", "sigma2")
    if mu2_arr.shape[0] != ref.dim:
        raise InputError(f"mu2 has dimension {mu2_arr.shape[0]} but mu1 has {ref.dim}; "
                         "both must come from the same extractor layer")
    diff = ref.mu - mu2_arr
    value = float(diff @ diff) + ref.trace + float(np.trace(s2)) - 2.0 * ref._trace_sqrt(s2, "sigma2")
    return max(value, 0.0)


def trace_sqrt_product_features(x1: np.ndarray, x2: np.ndarray) -> float:
    """Returns tr((S1^½ S2 S1^½)^½) for the unbiased covariances of two feature arrays, via the n1×n2 route.

    The non-zero eigenvalues of S1 S2 are the squared singular values of Xc1 Xc2ᵀ / sqrt((n1-1)(n2-1)),
    with Xc the centred features, so the trace is their sum: exact to float64 rounding, no d×d matrix.
    """
    a = _validate.features(x1, "x1")
    b = _validate.features(x2, "x2")
    _validate.same_dim(a, b, "x1", "x2")
    return _gram_trace_sqrt(a - a.mean(axis=0), b - b.mean(axis=0))


def _gram_trace_sqrt(xc1: np.ndarray, xc2: np.ndarray) -> float:
    s = scipy.linalg.svdvals(xc1 @ xc2.T, check_finite=False)
    return float(s.sum()) / np.sqrt((xc1.shape[0] - 1) * (xc2.shape[0] - 1))


def frechet_distance_features(x1: np.ndarray, x2: np.ndarray, *, warn: bool = True) -> float:
    """Returns the squared Fréchet distance between Gaussians fitted to feature arrays x1 (n1, d) and x2 (n2, d).

    Covariances are unbiased (divided by n - 1), as in pytorch-fid. When either side has fewer samples
    than dimensions the n1×n2 cross-product route is used (cost n1·n2·d, exact to float64 rounding, no
    d³ work); otherwise the covariance route of `frechet_distance`. Warns (FidkitWarning) when a side has
    fewer samples than dimensions or fewer than `FID_MIN_SAMPLES`; pass ``warn=False`` to silence.
    """
    a = _validate.features(x1, "x1")
    b = _validate.features(x2, "x2")
    _validate.same_dim(a, b, "x1", "x2")
    if warn:
        _validate.warn_sample_size(a.shape[0], a.shape[1], "x1")
        _validate.warn_sample_size(b.shape[0], b.shape[1], "x2")
    return _distance_features(a, b)


def _distance_features(a: np.ndarray, b: np.ndarray) -> float:
    d = a.shape[1]
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    diff = mu1 - mu2
    xc1, xc2 = a - mu1, b - mu2
    if min(a.shape[0], b.shape[0]) < d:
        tr1 = float(np.einsum("ij,ij->", xc1, xc1)) / (a.shape[0] - 1)
        tr2 = float(np.einsum("ij,ij->", xc2, xc2)) / (b.shape[0] - 1)
        value = float(diff @ diff) + tr1 + tr2 - 2.0 * _gram_trace_sqrt(xc1, xc2)
        return max(value, 0.0)
    s1 = (xc1.T @ xc1) / (a.shape[0] - 1)
    s2 = (xc2.T @ xc2) / (b.shape[0] - 1)
    return frechet_distance(mu1, 0.5 * (s1 + s1.T), mu2, 0.5 * (s2 + s2.T))
