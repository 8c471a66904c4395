"""Returns FID∞ and IS∞: the scores extrapolated to infinitely many samples by a linear fit in 1/N.

Reference: M. J. Chong, D. Forsyth, "Effectively Unbiased FID and Inception Score and where to find
them", CVPR 2020. FID and IS computed from N samples are biased, the bias being linear in 1/N to first
order; the score is computed on random sub-samples of several sizes N (by default 15 sizes evenly
spaced from 5,000 to all samples, as the paper), a least-squares line is fitted to (1/N, score), and
its value at 1/N = 0 is reported. For IS each sub-sample is scored as one split (splits=1), as in the
paper's code.

Sub-samples are drawn with ``rng = numpy.random.default_rng(seed)`` and, for each size in increasing
order, the first N rows of ``rng.permutation(n)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import _validate
from ._threads import progress_bar, small_blas
from .errors import FidkitWarning, InputError
from .frechet import FrechetReference
from .inception_score import inception_score

#: The paper's smallest sub-sample and number of sizes.
DEFAULT_MIN_SIZE = 5_000
DEFAULT_NUM_POINTS = 15


@dataclass(frozen=True)
class InfinityResult:
    """An extrapolated score: ``value`` at N = ∞, the fitted ``slope`` in 1/N, and the fit's points."""

    value: float
    slope: float
    sizes: tuple[int, ...]
    scores: tuple[float, ...]

    def __float__(self) -> float:
        return self.value

    def predict(self, n: float) -> float:
        """Returns the fitted score at sample size ``n`` (value + slope / n)."""
        return self.value + self.slope / n


def _sizes(n: int, sizes: Sequence[int] | None, num_points: int, min_size: int) -> np.ndarray:
    """Returns the sorted distinct sub-sample sizes to fit, validated against ``n`` samples."""
    if sizes is None:
        num_points = _validate.positive_int(num_points, "num_points", minimum=2)
        lo = min(_validate.positive_int(min_size, "min_size", minimum=2), max(2, n // 2))
        out = np.unique(np.linspace(lo, n, num_points).astype(np.int64))
    else:
        out = np.unique(np.asarray(sizes, dtype=np.int64))
    if out.size < 2:
        raise InputError(f"sizes: expected at least 2 distinct sub-sample sizes to fit a line, received "
                         f"{out.tolist()}; pass more sizes or more samples")
    if out[0] < 2 or out[-1] > n:
        raise InputError(f"sizes: expected sub-sample sizes between 2 and the {n} samples available, "
                         f"received {out.tolist()}")
    return out


def _fit(sizes: np.ndarray, scores: np.ndarray) -> InfinityResult:
    slope, intercept = np.polyfit(1.0 / sizes, scores, 1)
    return InfinityResult(value=float(intercept), slope=float(slope),
                          sizes=tuple(int(s) for s in sizes), scores=tuple(float(s) for s in scores))


def _extrapolate(n: int, sizes: np.ndarray, seed: int, score: Callable[[np.ndarray], float], dim: int,
                 desc: str, progress: bool) -> InfinityResult:
    rng = np.random.default_rng(seed)
    scores = np.empty(len(sizes))
    with small_blas(dim), progress_bar(len(sizes), desc, progress, unit="size") as bar:
        for i, size in enumerate(sizes):
            scores[i] = score(rng.permutation(n)[:size])
            bar.update(1)
    return _fit(sizes, scores)


def fid_infinity(real: FrechetReference | tuple[np.ndarray, np.ndarray] | np.ndarray,
                 fake_features: np.ndarray, *, sizes: Sequence[int] | None = None,
                 num_points: int = DEFAULT_NUM_POINTS, min_size: int = DEFAULT_MIN_SIZE,
                 seed: int = 0, progress: bool = False) -> InfinityResult:
    """Returns FID∞ (Chong & Forsyth 2020): FID of sub-samples of ``fake_features`` extrapolated to N = ∞.

    ``real`` is fixed: a `FrechetReference`, a ``(mu, sigma)`` pair, or real features (N, d) whose
    statistics are used whole. ``sizes`` overrides the sub-sample sizes; by default ``num_points``
    sizes from ``min(min_size, n // 2)`` to n. Warns if a sub-sample has fewer samples than dimensions,
    where the 1/N law is not expected to hold. ``progress`` shows a bar over the sub-sample sizes.
    """
    if isinstance(real, FrechetReference):
        ref = real
    elif isinstance(real, tuple):
        ref = FrechetReference(*real, name="real")
    else:
        x_real = _validate.features(real, "real")
        ref = FrechetReference(x_real.mean(axis=0), np.cov(x_real, rowvar=False).reshape(
            x_real.shape[1], x_real.shape[1]), name="real")
    fake = _validate.features(fake_features, "fake_features")
    if fake.shape[1] != ref.dim:
        raise InputError(f"fake_features has feature dimension {fake.shape[1]} but real has {ref.dim}; "
                         "both must come from the same extractor layer")
    grid = _sizes(fake.shape[0], sizes, num_points, min_size)
    if grid[0] < ref.dim:
        warnings.warn(f"fid_infinity: the smallest sub-sample has {grid[0]} samples, fewer than the {ref.dim} "
                      "feature dimensions; FID's 1/N bias law assumes N well above d — use more samples",
                      FidkitWarning, stacklevel=2)
    return _extrapolate(fake.shape[0], grid, seed, lambda idx: ref._distance_features(fake[idx]), ref.dim,
                        "FID∞ fit", progress)


def is_infinity(logits_or_probs: np.ndarray, *, from_logits: bool = True,
                sizes: Sequence[int] | None = None, num_points: int = DEFAULT_NUM_POINTS,
                min_size: int = DEFAULT_MIN_SIZE, seed: int = 0, progress: bool = False) -> InfinityResult:
    """Returns IS∞ (Chong & Forsyth 2020): Inception Score of sub-samples (one split each) extrapolated to N = ∞.

    One split per sub-sample, so the order of the rows does not matter (no shuffle is needed)."""
    name = "logits" if from_logits else "probs"
    x = _validate.features(logits_or_probs, name)
    grid = _sizes(x.shape[0], sizes, num_points, min_size)
    return _extrapolate(x.shape[0], grid, seed,
                        lambda idx: inception_score(x[idx], splits=1, from_logits=from_logits,
                                                    shuffle_seed=None)[0], x.shape[1], "IS∞ fit", progress)
