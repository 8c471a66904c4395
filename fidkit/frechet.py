"""Returns the squared Fréchet distance between Gaussians fitted to features (FID; Heusel et al. 2017).

    d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr( (S1^½ S2 S1^½)^½ )

Reference: M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017; the distance itself is
Dowson & Landau 1982, "The Fréchet distance between multivariate normal distributions".

How it is computed (float64 throughout, never complex): each covariance is factored by a pivoted
Cholesky decomposition, S = F Fᵀ with F of size d × rank (LAPACK ``dpstrf``, which stops at the rounding
floor ``d * eps * max diag`` and so also finds the numerical rank); then
tr((S1^½ S2 S1^½)^½) = ||F1ᵀ F2||_* (nuclear norm): the singular values of G = F1ᵀ F2 by SVD when
min(rank1, rank2) <= `SVD_MAX_RANK`, else the square roots of the eigenvalues of G's smaller Gram matrix. Unlike ``scipy.linalg.sqrtm(S1 @ S2)`` (pytorch-fid),
nothing non-symmetric is square-rooted, no ``eps`` is added to the diagonal and no imaginary part is
dropped; Cholesky keeps strongly graded covariances (features on very different scales) accurate, and
rank-deficient covariances (fewer samples than dimensions) reduce to rank-sized problems.

Clamping, stated once: what the pivoted Cholesky leaves below its rounding floor is treated as zero
(after checking it is that small: a remainder beyond ``PSD_RTOL`` of the largest variance means the
matrix is not PSD and raises InputError); eigenvalues of the Gram matrix that are negative by rounding
are set to zero. Every route ends in one function (`_frechet`), which reports a distance at or below
the rounding floor ``d * eps * (|mu1 - mu2|² + tr(S1) + tr(S2))`` as exactly 0: identical inputs give
0 on every route, and rounding noise is never printed as a tiny positive FID on one route and 0 on
another.

Covariances stored in float16 (about 3 significant digits) are accepted when they are positive
semi-definite to within that rounding, with a warning that bounds what the rounding can cost
(`accept_rounded`); float32 and float64 inputs take the float64 path unchanged.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from . import _validate
from .errors import FidkitWarning, InputError

#: A pivoted-Cholesky remainder larger than ``PSD_RTOL`` times the largest variance means the matrix is
#: not PSD (float32 storage of a 2048-d covariance perturbs it by a few 1e-7 relative, far below).
PSD_RTOL = 1e-5

_EPS = np.finfo(np.float64).eps


def _frechet(diff: np.ndarray, trace1: float, trace2: float, trace_sqrt: float, dim: int) -> float:
    """Returns |diff|² + trace1 + trace2 - 2 trace_sqrt, or 0.0 when that is within rounding of 0.

    The one place the Fréchet formula is evaluated (Dowson & Landau 1982), from its parts: the mean
    difference (d,), tr(S1), tr(S2) and tr((S1^½ S2 S1^½)^½). Each part is a sum of about d rounded
    terms no larger than itself, so the result is resolved only down to ``d * eps`` times the sum of
    the parts — the relative floor LAPACK's pivoted Cholesky also stops at (``n * eps`` times the
    largest variance). A value at or below that floor, negative ones included, is reported as 0.0.
    """
    mean_term = float(diff @ diff)
    value = mean_term + trace1 + trace2 - 2.0 * trace_sqrt
    floor = dim * _EPS * (mean_term + trace1 + trace2)
    return float(value) if value > floor else 0.0


def _pivoted_cholesky(sigma: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (L, order): L (d, rank) lower trapezoidal with L Lᵀ = sigma[order][:, order] to rounding.

    Raises InputError if what is left unfactored is more than rounding, i.e. ``sigma`` is not PSD.
    """
    d = sigma.shape[0]
    top = float(np.max(np.diagonal(sigma))) if d else 0.0
    if top <= 0.0:
        if np.any(sigma != 0.0):
            raise InputError(f"{name}: not positive semi-definite: no positive variance but non-zero "
                             "covariances; pass a covariance matrix")
        return np.zeros((d, 0)), np.arange(d)
    c, piv, rank, info = scipy.linalg.lapack.dpstrf(sigma, lower=1)
    if info < 0:
        raise InputError(f"{name}: LAPACK dpstrf rejected argument {-info}; pass a finite square matrix")
    order = piv - 1
    lower = np.tril(c[:, :rank])
    if rank < d:
        # The part left unfactored must be ~0: S - L Lᵀ restricted to the unpivoted indices is the
        # Schur complement, PSD (and below the rounding floor) exactly when S is PSD.
        rest = order[rank:]
        remainder = sigma[np.ix_(rest, rest)] - lower[rank:] @ lower[rank:].T
        worst = float(np.max(np.abs(remainder)))
        if worst > PSD_RTOL * top:
            raise InputError(f"{name}: not positive semi-definite: after a rank-{rank} pivoted Cholesky "
                             f"factorisation the remainder has entries up to {worst:.4g} (largest variance "
                             f"{top:.4g}); pass a covariance matrix, e.g. np.cov(features, rowvar=False)")
    return lower, order


def _storage_rounding(x: object) -> tuple[np.dtype, float, float] | None:
    """Returns (dtype, unit roundoff, half the smallest subnormal) if ``x`` is a numpy array stored in a
    float type coarser than float32 (float16), else None: those are the inputs `_accept_rounded` serves."""
    if not isinstance(x, np.ndarray | np.generic) or x.dtype.kind != "f":
        return None
    info = np.finfo(x.dtype)
    if info.eps <= np.finfo(np.float32).eps:
        return None
    return x.dtype, float(info.eps) / 2, float(info.smallest_subnormal) / 2


def _accept_rounded(mu: object, sigma: object, name_mu: str, name_sigma: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns validated float64 (mean (d,), covariance (d, d)) from a mean or covariance stored in float16.

    Storing a PSD matrix S in a float type with unit roundoff u perturbs it by E with
    |E_ij| <= u |S_ij| + t (t: half the smallest subnormal), so ||E||_2 <= ||E||_F <= u ||S||_F + d t,
    and by Weyl's inequality no eigenvalue moves further than that. A smallest eigenvalue below minus
    that bound is not rounding: InputError, as for any non-PSD matrix. Otherwise the negative
    eigenvalues are set to 0 (a float64 PSD matrix) and a FidkitWarning names the dtype and bounds the
    cost: √FID against these statistics can move by up to sqrt(|δmu|² + ||δS||_*), since √FID is the
    2-Wasserstein distance, a metric, and the Bures part of it obeys B(A, B)² <= ||A^½ - B^½||_F² <=
    ||A - B||_* (Powers & Størmer, Comm. Math. Phys. 16, 1970), with ||δS||_* <= √d ||E||_F plus the
    eigenvalues set to 0.
    """
    m = _validate.mean_vector(mu, name_mu)
    s = _validate.covariance(sigma, name_sigma, m.shape[0])
    d = m.shape[0]
    rounding_s, rounding_m = _storage_rounding(sigma), _storage_rounding(mu)
    e_fro, clipped, lowest = 0.0, 0.0, 0.0
    n_negative = 0
    if rounding_s is not None:
        dtype, u, tiny = rounding_s
        e_fro = u * float(np.linalg.norm(s)) + d * tiny
        w, v = scipy.linalg.eigh(s)
        lowest = float(w[0])
        if lowest < -e_fro:
            raise InputError(f"{name_sigma}: not positive semi-definite even allowing for {dtype} storage: "
                             f"smallest eigenvalue {lowest:.4g}, below -{e_fro:.3g} (the most rounding to "
                             f"{dtype} can move an eigenvalue); pass a covariance matrix, e.g. "
                             f"np.cov(features, rowvar=False)")
        negative = w < 0
        n_negative = int(negative.sum())
        if n_negative:
            clipped = float(-w[negative].sum())
            s = (v * np.clip(w, 0.0, None)) @ v.T
            s = 0.5 * (s + s.T)
    e_mu = 0.0
    if rounding_m is not None:
        _, u_m, tiny_m = rounding_m
        e_mu = u_m * float(np.linalg.norm(m)) + np.sqrt(d) * tiny_m
    source = rounding_s if rounding_s is not None else rounding_m
    if source is None:
        return m, s
    dtype, where = source[0], name_sigma if rounding_s is not None else name_mu
    shift = float(np.sqrt(e_mu**2 + np.sqrt(d) * e_fro + clipped))
    fixed = (f"; {n_negative} eigenvalues down to {lowest:.3g}, within that rounding, were set to 0"
             if n_negative else "")
    warnings.warn(f"{where}: stored as {dtype} (about {np.finfo(dtype).precision} significant digits){fixed}; "
                  f"that rounding can move √FID against these statistics by up to {shift:.3g} (a "
                  f"worst-case bound) — store statistics as float32 or float64",
                  FidkitWarning, stacklevel=3)
    return m, s


def _mean_and_cov(mu: object, sigma: object, name_mu: str, name_sigma: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns validated float64 (mean, covariance), accepting float16 storage (`_accept_rounded`)."""
    if _storage_rounding(mu) is not None or _storage_rounding(sigma) is not None:
        return _accept_rounded(mu, sigma, name_mu, name_sigma)
    return _validate.mean_and_cov(mu, sigma, name_mu, name_sigma)


def psd_factor(sigma: np.ndarray, name: str) -> np.ndarray:
    """Returns F (d, rank) with F Fᵀ = ``sigma`` to rounding, by pivoted Cholesky; raises InputError if not PSD.

    ``sigma`` must already be a validated symmetric float64 matrix (`fidkit._validate.covariance`).
    """
    lower, order = _pivoted_cholesky(sigma, name)
    factor = np.empty_like(lower)
    factor[order] = lower
    return factor


def _lower_t_times(lower: np.ndarray, order: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Returns Lᵀ g: the product F1ᵀ F2 when ``g`` is F2 with its rows in L's pivot ``order`` (half a product)."""
    r = lower.shape[1]
    out = scipy.linalg.blas.dtrmm(1.0, lower[:r], g[:r], lower=1, trans_a=1)
    if r < lower.shape[0]:
        out += lower[r:].T @ g[r:]
    return out


#: Up to this smaller rank the nuclear norm comes from an SVD (accurate even for zero singular values);
#: above it from the eigenvalues of the Gram matrix, about 3x faster but blurring singular values below
#: sqrt(eps) times the largest (a rounding-level effect on the distance).
SVD_MAX_RANK = 512


def _singular_values(g: np.ndarray) -> np.ndarray:
    # gesvd, not gesdd: same values, and far less sensitive to BLAS threads on a busy machine.
    return scipy.linalg.svd(g, compute_uv=False, check_finite=False, lapack_driver="gesvd")


def _nuclear_norm(g: np.ndarray) -> float:
    """Returns the sum of singular values of ``g``."""
    if g.size == 0:
        return 0.0
    if min(g.shape) <= SVD_MAX_RANK:
        return float(np.sum(_singular_values(g)))
    gram = g.T @ g if g.shape[1] <= g.shape[0] else g @ g.T
    ev = scipy.linalg.eigh(gram, lower=True, eigvals_only=True, check_finite=False, driver="evd")
    return float(np.sum(np.sqrt(np.clip(ev, 0.0, None))))


class FrechetReference:
    """A reference Gaussian (mean, covariance) factored once, for many Fréchet distances against it.

    Building it costs one pivoted Cholesky factorisation of ``sigma``; each `distance` then costs the
    factorisation of the other covariance (d³/3), a triangular product with the cached factor, one Gram
    product and one symmetric eigenvalue problem of size min(rank1, rank2) (about 10x less CPU than
    pytorch-fid's sqrtm formula at d=2048); each `distance_features` with n <= d samples one product and
    one n×rank SVD. Use it to compute FID every epoch against fixed real-data statistics.
    """

    __slots__ = ("mu", "trace", "dim", "rank", "_lower", "_order")

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, *, name: str = "reference") -> None:
        self._build(mu, sigma, f"{name} mean", f"{name} covariance")

    def _build(self, mu: np.ndarray, sigma: np.ndarray, mu_name: str, sigma_name: str) -> None:
        mu_arr, sigma_arr = _mean_and_cov(mu, sigma, mu_name, sigma_name)
        self._lower, self._order = _pivoted_cholesky(sigma_arr, sigma_name)
        self.mu = mu_arr.copy()  # never freeze the caller's array
        self.mu.setflags(write=False)
        self.trace = float(np.trace(sigma_arr))
        self.dim = mu_arr.shape[0]
        self.rank = self._lower.shape[1]

    def __repr__(self) -> str:
        return f"FrechetReference(dim={self.dim}, rank={self.rank}, trace={self.trace:.6g})"

    def trace_sqrt(self, sigma: np.ndarray, *, name: str = "sigma") -> float:
        """Returns tr((S^½ sigma S^½)^½) for this reference's covariance S and a PSD ``sigma``."""
        s2 = _validate.covariance(sigma, name, self.dim)
        return self._trace_sqrt(s2, name)

    def _trace_sqrt(self, s2: np.ndarray, name: str) -> float:
        if self.rank == 0:
            psd_factor(s2, name)  # still validates sigma
            return 0.0
        lower2, order2 = _pivoted_cholesky(s2, name)
        # Rows of F2 in this reference's pivot order, gathered from L2 in one step.
        position = np.empty_like(order2)
        position[order2] = np.arange(order2.size)
        return _nuclear_norm(_lower_t_times(self._lower, self._order, lower2[position[self._order]]))

    def distance(self, mu: np.ndarray, sigma: np.ndarray, *, name: str = "sigma") -> float:
        """Returns the squared Fréchet distance between this reference and N(``mu``, ``sigma``)."""
        mu2, s2 = _mean_and_cov(mu, sigma, f"{name} mean", name)
        if mu2.shape[0] != self.dim:
            raise InputError(f"{name} mean has dimension {mu2.shape[0]} but the reference has {self.dim}; "
                             "both must come from the same extractor layer")
        return _frechet(self.mu - mu2, self.trace, float(np.trace(s2)), self._trace_sqrt(s2, name), self.dim)

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
            g = xc[:, self._order] @ self._lower
            tr_sqrt = float(_singular_values(g).sum()) / np.sqrt(n - 1) if g.size else 0.0
            tr2 = float(np.einsum("ij,ij->", xc, xc)) / (n - 1)
        else:
            s2 = (xc.T @ xc) / (n - 1)
            s2 = 0.5 * (s2 + s2.T)
            tr_sqrt = self._trace_sqrt(s2, "features covariance")
            tr2 = float(np.trace(s2))
        return _frechet(diff, self.trace, tr2, tr_sqrt, self.dim)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Returns the squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID for Inception features).

    ``mu1``, ``mu2`` are (d,) and ``sigma1``, ``sigma2`` (d, d) real arrays, computed in float64. Exact for
    any symmetric PSD covariances, including rank-deficient ones; see the module docstring for the
    method and the clamping of rounding-level eigenvalues.

    Zero, one rule for every route (this function, `FrechetReference.distance`,
    `FrechetReference.distance_features`, `frechet_distance_features`): a computed value at or below
    ``d * eps * (|mu1 - mu2|² + tr(sigma1) + tr(sigma2))`` — the rounding floor of the sums it is made
    of — is returned as exactly 0.0, and nothing larger is altered. Identical inputs therefore give 0.0
    on every route, never 1e-12 on one and 0 on another.

    A mean or covariance stored in float16 is accepted when the covariance is PSD to within float16
    rounding, with a FidkitWarning bounding what that rounding can cost. Raises InputError for NaN/inf,
    mismatched shapes, non-symmetric or non-PSD covariances. For many distances against one reference,
    build a `FrechetReference` once.
    """
    ref = FrechetReference.__new__(FrechetReference)
    ref._build(mu1, sigma1, "mu1", "sigma1")
    mu2_arr, s2 = _mean_and_cov(mu2, sigma2, "mu2", "sigma2")
    if mu2_arr.shape[0] != ref.dim:
        raise InputError(f"mu2 has dimension {mu2_arr.shape[0]} but mu1 has {ref.dim}; "
                         "both must come from the same extractor layer")
    return _frechet(ref.mu - mu2_arr, ref.trace, float(np.trace(s2)), ref._trace_sqrt(s2, "sigma2"), ref.dim)


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
    s = _singular_values(xc1 @ xc2.T)
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
        return _frechet(diff, tr1, tr2, _gram_trace_sqrt(xc1, xc2), d)
    s1 = (xc1.T @ xc1) / (a.shape[0] - 1)
    s2 = (xc2.T @ xc2) / (b.shape[0] - 1)
    return frechet_distance(mu1, 0.5 * (s1 + s1.T), mu2, 0.5 * (s2 + s2.T))
