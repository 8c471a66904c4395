"""Returns validated float64 arrays: the input checks every metric shares (finite, shape, sample count).

Each check raises `fidkit.errors.InputError` with a one-line message naming the argument, what was
expected, what was received and what to do. Other modules import these helpers; they are private to fidkit.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import FidkitWarning, InputError

#: Below this many samples FID's upward bias is large compared with differences papers report
#: (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find them").
FID_MIN_SAMPLES = 10_000
#: The sample count papers conventionally use for FID and IS (Heusel et al. 2017; Brock et al. 2019).
FID_RECOMMENDED_SAMPLES = 50_000

#: Largest asymmetry |S - S^T| / max|S| accepted as rounding (float32 covariances reach ~1e-7).
SYMMETRY_RTOL = 1e-5


def as_float64(x: object, name: str) -> np.ndarray:
    """Returns ``x`` as a float64 ndarray; raises InputError if it is not numeric."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name}: cannot be read as an array ({exc}); pass a numeric numpy array") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(f"{name}: expected a numeric array, received dtype {arr.dtype}; "
                         "pass float features")
    if np.iscomplexobj(arr):
        raise InputError(f"{name}: expected a real array, received dtype {arr.dtype}; "
                         "pass the real part explicitly if that is what is meant")
    return np.asarray(arr, dtype=np.float64)


def check_finite(arr: np.ndarray, name: str) -> None:
    """Returns None; raises InputError naming the first NaN or inf in ``arr``."""
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(arr[where]) else "inf"
        raise InputError(f"{name}: expected finite values, found {int(bad.sum())} NaN/inf "
                         f"(first: {kind} at index {where}); remove or fix those samples")


def features(x: object, name: str, *, min_samples: int = 2) -> np.ndarray:
    """Returns ``x`` as a finite float64 (N, d) array with N >= ``min_samples``."""
    arr = as_float64(x, name)
    check_feature_shape(arr, name, min_samples=min_samples)
    check_finite(arr, name)
    return arr


def check_feature_shape(arr: np.ndarray, name: str, *, min_samples: int = 2) -> None:
    """Raises `InputError` unless ``arr`` is (N, d) with d >= 1 and N >= ``min_samples``."""
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2-D array of features (N, d), received shape {arr.shape}; "
                         "reshape to (samples, feature_dim)")
    if arr.shape[1] < 1:
        raise InputError(f"{name}: expected at least one feature dimension, received shape {arr.shape}")
    if arr.shape[0] < min_samples:
        raise InputError(f"{name}: expected at least {min_samples} samples, received {arr.shape[0]}; "
                         "pass more samples")


def same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Returns None; raises InputError if the last dimensions of ``a`` and ``b`` differ."""
    if a.shape[-1] != b.shape[-1]:
        raise InputError(f"{name_a} has feature dimension {a.shape[-1]} but {name_b} has {b.shape[-1]}; "
                         "both must come from the same extractor layer")


def mean_vector(x: object, name: str) -> np.ndarray:
    """Returns ``x`` as a finite float64 (d,) array."""
    arr = as_float64(x, name)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a mean vector of shape (d,), received shape {arr.shape}")
    if arr.shape[0] < 1:
        raise InputError(f"{name}: expected a mean vector with at least one dimension, received shape (0,)")
    check_finite(arr, name)
    return arr


def covariance(x: object, name: str, d: int | None = None) -> np.ndarray:
    """Returns ``x`` as a finite, exactly symmetric float64 (d, d) array.

    Asymmetry up to `SYMMETRY_RTOL` relative to the largest entry is rounding and is removed by
    averaging with the transpose; more raises InputError. Positive semi-definiteness is checked where
    the eigenvalues are computed (`fidkit.frechet`), since that costs a factorisation.
    """
    arr = as_float64(x, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InputError(f"{name}: expected a square covariance matrix (d, d), received shape {arr.shape}")
    if d is not None and arr.shape[0] != d:
        raise InputError(f"{name}: expected shape ({d}, {d}) to match the mean, received {arr.shape}")
    check_finite(arr, name)
    scale = float(np.max(np.abs(arr))) if arr.size else 0.0
    asym = float(np.max(np.abs(arr - arr.T))) if arr.size else 0.0
    if asym > SYMMETRY_RTOL * scale:
        i, j = (int(v) for v in np.unravel_index(np.argmax(np.abs(arr - arr.T)), arr.shape))
        raise InputError(f"{name}: expected a symmetric covariance, found |{name}[{i},{j}] - {name}[{j},{i}]| "
                         f"= {asym:.3g} (largest entry {scale:.3g}); pass a covariance (e.g. np.cov), "
                         "not a raw product")
    if asym > 0:
        arr = 0.5 * (arr + arr.T)
    diag = np.diagonal(arr)
    if diag.size and diag.min() < -SYMMETRY_RTOL * scale:
        i = int(np.argmin(diag))
        raise InputError(f"{name}: not positive semi-definite: diagonal entry {name}[{i},{i}] = "
                         f"{diag[i]:.3g} < 0; a covariance has non-negative variances")
    return arr


def mean_and_cov(mu: object, sigma: object, name_mu: str, name_sigma: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns validated (mean (d,), covariance (d, d)) float64 arrays of matching dimension."""
    m = mean_vector(mu, name_mu)
    s = covariance(sigma, name_sigma, m.shape[0])
    return m, s


def warn_sample_size(n: int, d: int, name: str, *, metric: str = "FID") -> None:
    """Returns None; warns (FidkitWarning) when ``n`` samples give a rank-deficient or strongly biased estimate."""
    if n < d:
        warnings.warn(f"{name}: {n} samples of {d}-d features: the covariance has rank at most {n - 1} < {d}; "
                      f"{metric} is still exact for these samples but far from its large-sample value; "
                      f"use at least {FID_MIN_SAMPLES:,} samples ({FID_RECOMMENDED_SAMPLES:,} as in papers)",
                      FidkitWarning, stacklevel=3)
    elif n < FID_MIN_SAMPLES:
        warnings.warn(f"{name}: {metric} from {n:,} samples is biased upwards (Chong & Forsyth 2020); "
                      f"use at least {FID_MIN_SAMPLES:,} ({FID_RECOMMENDED_SAMPLES:,} as in papers) or report "
                      "fid_infinity", FidkitWarning, stacklevel=3)


def warn_sample_sizes(sizes: dict[str, int | None], d: int, *, metric: str = "FID") -> None:
    """Returns None; warns once (FidkitWarning) naming every input in ``sizes`` ({label: n}, None:
    unknown) whose sample count gives a rank-deficient or strongly biased estimate."""
    small = {label: n for label, n in sizes.items() if n is not None and n < FID_MIN_SAMPLES}
    if not small:
        return
    who = " and ".join(f"{label} ({n:,} samples)" for label, n in small.items())
    deficient = {label: n for label, n in small.items() if n < d}
    rank = ""
    if deficient:
        names = " and ".join(deficient)
        rank = (f"; with fewer samples than the {d} feature dimensions the covariance of {names} is "
                f"rank-deficient, so {metric} is exact for these samples but far from its large-sample value")
    warnings.warn(f"{metric} from {who} is biased upwards (Chong & Forsyth 2020){rank}; use at least "
                  f"{FID_MIN_SAMPLES:,} samples ({FID_RECOMMENDED_SAMPLES:,} as in papers) or report "
                  "fid_infinity", FidkitWarning, stacklevel=3)


def positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Returns ``value`` as an int >= ``minimum``; raises InputError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name}: expected an integer >= {minimum}, received {value!r}")
    if value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, received {value}")
    return int(value)
