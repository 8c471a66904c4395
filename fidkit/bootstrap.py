"""Returns uncertainty for reported scores: bootstrap confidence intervals for FID and KID, mean ± std over runs.

References: B. Efron, R. Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall 1993 (percentile
intervals, ch. 13); A. C. Davison, D. V. Hinkley, "Bootstrap Methods and their Application", CUP 1997
(bootstrap bias, sec. 2.4). Each replicate resamples the samples with replacement and recomputes the score.

KID's estimator is unbiased (copies of one sample are excluded like the diagonal), so its replicates centre
on the estimate and the percentile interval [q_lo, q_hi] is used. FID is not: a resample with replacement
holds only ~63% distinct samples, so every replicate's FID carries extra upward bias, and at small n/d the
percentile interval lies entirely above the FID itself (the basic interval, its mirror image, then lies
entirely below). FID therefore gets the replicates' spread re-centred on the estimate,
[FID + q_lo - q_50, FID + q_hi - q_50], clamped at 0: an interval for the FID one would measure at these
sample sizes, not for the population FID, whose small-sample bias it does not remove (see
`fidkit.infinity`).
Replicates are drawn with ``numpy.random.default_rng(seed)``. Every function takes ``progress`` (a bar
on stderr over the replicates); loops of small factorisations run with one BLAS thread
(`fidkit._threads`), which changes no number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from . import _validate
from ._threads import parallel_map, progress_bar, small_blas
from .errors import InputError
from .frechet import FrechetReference, _distance_features
from .kid import _check as _check_kid
from .kid import kid as _kid
from .kid import mmd2_unbiased
from .metrics import METRICS, flag
from .prdc import PRDC, PerSample, _per_samples
from .prdc import _check as _check_prdc


@dataclass(frozen=True)
class ConfidenceInterval:
    """A score ``value`` (on all samples) with a bootstrap interval [low, high] at ``level``."""

    value: float
    low: float
    high: float
    level: float
    n_boot: int

    def __str__(self) -> str:
        return f"{self.value:.6g} [{self.low:.6g}, {self.high:.6g}] ({self.level:.0%} bootstrap, {self.n_boot} resamples)"


@dataclass(frozen=True)
class MeanStd:
    """The mean and sample standard deviation (ddof=1) of ``n`` repeated scores, as reported in papers."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.6g} ± {self.std:.3g} (n={self.n})"


def mean_std(values: Iterable[float]) -> MeanStd:
    """Returns mean ± sample std (ddof=1) of scores from several seeds, subsets or runs."""
    arr = _validate.as_float64(list(values), "values")
    if arr.ndim != 1 or arr.size < 2:
        raise InputError(f"values: expected at least 2 scores in a flat sequence, received shape {arr.shape}")
    _validate.check_finite(arr, "values")
    return MeanStd(float(arr.mean()), float(arr.std(ddof=1)), int(arr.size))


def over_seeds(score: Callable[[int], float], seeds: Iterable[int]) -> MeanStd:
    """Returns mean ± std of ``score(seed)`` over ``seeds`` (e.g. KID or FID∞ with different draws)."""
    return mean_std(float(score(int(s))) for s in seeds)


def _interval(value: float, reps: np.ndarray, level: float) -> ConfidenceInterval:
    lo, hi = np.percentile(reps, [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
    return ConfidenceInterval(float(value), float(lo), float(hi), float(level), int(reps.size))


def _centred_interval(value: float, reps: np.ndarray, level: float) -> ConfidenceInterval:
    lo, mid, hi = np.percentile(reps, [50.0 * (1.0 - level), 50.0, 50.0 * (1.0 + level)])
    return ConfidenceInterval(float(value), max(0.0, float(value + lo - mid)), float(value + hi - mid),
                              float(level), int(reps.size))


def _check_level(level: float, n_boot: int) -> int:
    if not 0.0 < level < 1.0:
        raise InputError(f"{flag('level')} {level!r}: expected a confidence level strictly between 0 and 1 "
                         f"(level= in Python), e.g. {flag('level')} 0.95")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 2:
        raise InputError(f"{flag('n_boot')} {n_boot!r}: a bootstrap interval needs at least 2 resamples "
                         f"(n_boot= in Python); pass {flag('n_boot')} 100, or {flag('n_boot')} 0 for no "
                         f"intervals")
    return int(n_boot)


def bootstrap_fid(real: FrechetReference | tuple[np.ndarray, np.ndarray] | np.ndarray,
                  fake_features: np.ndarray, *, n_boot: int = 100, level: float = 0.95,
                  seed: int = 0, progress: bool = False) -> ConfidenceInterval:
    """Returns FID (Heusel et al. 2017) with a bootstrap interval re-centred on the estimate (module doc).

    ``real`` as features (N, d) is resampled together with ``fake_features``; as a `FrechetReference`
    or ``(mu, sigma)`` (e.g. published dataset statistics) it is held fixed and only the fake samples
    are resampled. With fewer samples than dimensions the n×n route makes each replicate cheap.
    """
    n_boot = _check_level(level, n_boot)
    fake = _validate.features(fake_features, "fake_features")
    rng = np.random.default_rng(seed)
    n_f = fake.shape[0]
    if isinstance(real, FrechetReference | tuple):
        ref = real if isinstance(real, FrechetReference) else FrechetReference(*real, name="real")
        if fake.shape[1] != ref.dim:
            raise InputError(f"fake_features has feature dimension {fake.shape[1]} but real has {ref.dim}; "
                             "both must come from the same extractor layer")
        value = ref.distance_features(fake, name="fake_features")
        return _centred_interval(value, _replicates(
            n_boot, fake.shape[1], "FID bootstrap", progress,
            lambda: ref._distance_features(fake[rng.integers(0, n_f, n_f)])), level)
    x_real = _validate.features(real, "real")
    _validate.same_dim(x_real, fake, "real", "fake_features")
    for name, arr in (("real", x_real), ("fake_features", fake)):
        _validate.warn_sample_size(arr.shape[0], arr.shape[1], name)
    n_r = x_real.shape[0]
    value = _distance_features(x_real, fake)
    return _centred_interval(value, _replicates(
        n_boot, fake.shape[1], "FID bootstrap", progress,
        lambda: _distance_features(x_real[rng.integers(0, n_r, n_r)], fake[rng.integers(0, n_f, n_f)])), level)


def _replicates(n_boot: int, dim: int, desc: str, progress: bool, replicate: Callable[[], float]) -> np.ndarray:
    """Returns (n_boot,) values of ``replicate()``, called in order (the draws stay those of the seed),
    with one BLAS thread for small ``dim`` and a progress bar with ``progress``."""
    reps = np.empty(n_boot)
    with small_blas(dim), progress_bar(n_boot, desc, progress, unit="resample") as bar:
        for b in range(n_boot):
            reps[b] = replicate()
            bar.update(1)
    return reps


def bootstrap_kid(features1: np.ndarray, features2: np.ndarray, *, n_boot: int = 100,
                  level: float = 0.95, subsets: int = 10, subset_size: int = 1000, degree: int = 3,
                  gamma: float | None = None, coef0: float = 1.0, seed: int = 0, progress: bool = False,
                  labels: tuple[str, str] = ("features1", "features2")) -> ConfidenceInterval:
    """Returns KID (Bińkowski et al. 2018) with a percentile bootstrap interval.

    ``value`` is ``kid(features1, features2, subsets, subset_size, degree, gamma, coef0, seed)``. Each
    replicate resamples both sets with replacement and recomputes KID the same way on the resamples;
    pairs that are copies of one original sample are excluded like the diagonal, so the unbiased
    estimator stays unbiased. Cost: (n_boot + 1) × subsets kernel evaluations of size subset_size.
    """
    n_boot = _check_level(level, n_boot)
    f1, f2 = _check_kid(features1, features2, subset_size, degree, gamma, labels)
    subsets = _validate.positive_int(subsets, f"KID subsets ({flag('subsets')})")
    value, _ = _kid(f1, f2, subsets, subset_size, degree, gamma, coef0, seed, labels=labels)
    rng = np.random.default_rng(seed)
    n1, n2 = f1.shape[0], f2.shape[0]
    kw = {"degree": degree, "gamma": gamma, "coef0": coef0, "labels": labels}

    # every replicate's draws first, in order (the seed's sequence), then the subsets one per core
    draws = []
    for _ in range(n_boot):
        r1, r2 = rng.integers(0, n1, n1), rng.integers(0, n2, n2)
        draws.append([(r1[rng.choice(n1, subset_size, replace=False)], r2[rng.choice(n2, subset_size,
                                                                                    replace=False)])
                      for _ in range(subsets)])
    flat = [ij for rep in draws for ij in rep]
    with progress_bar(len(flat), "KID bootstrap", progress, unit="subset") as bar:
        vals = parallel_map(lambda ij: mmd2_unbiased(f1[ij[0]], f2[ij[1]], ids_x=ij[0], ids_y=ij[1], **kw),
                            flat, bar)
    reps = np.asarray(vals).reshape(n_boot, subsets).mean(axis=1)
    return _interval(value, reps, level)


def bootstrap_prdc(real: np.ndarray, fake: np.ndarray, *, k: int | None = None, dc_k: int | None = None,
                   n_boot: int = 100, level: float = 0.95, seed: int = 0, block_size: int | None = None,
                   progress: bool = False) -> dict[str, ConfidenceInterval]:
    """Returns precision, recall, density and coverage with percentile bootstrap intervals.

    ``k`` and ``dc_k`` as in `fidkit.prdc.prdc`: both None, each pair at its registered default
    (precision/recall k = 3, density/coverage k = 5); ``k`` alone, all four at ``k``. The k-NN manifolds
    are computed once and held fixed; each replicate resamples the evaluated samples (fake samples for
    precision and density, real samples for recall and coverage) and re-averages their per-sample
    quantities (`fidkit.prdc.per_sample`). The intervals therefore show the sampling spread of the
    evaluated points only, not that of the manifold estimates, which would need the N² neighbour search
    on every replicate: read them as lower bounds on the uncertainty.
    """
    n_boot = _check_level(level, n_boot)
    pr_k = int(METRICS["pr"].defaults["k"]) if k is None else k
    dc_k = (int(METRICS["dc"].defaults["k"]) if k is None else k) if dc_k is None else dc_k
    r, f = _check_prdc(real, fake, (("pr", pr_k), ("dc", dc_k)))
    ps = _per_samples(r, f, (pr_k, dc_k), {pr_k}, block_size, progress)
    pr, dc = ps[pr_k], ps[dc_k]
    value = _prdc_of(pr, dc)
    n_fake, n_real = f.shape[0], r.shape[0]
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, 4))
    with progress_bar(n_boot, "k-NN bootstrap", progress, unit="resample") as bar:
        for b in range(n_boot):
            i_f, i_r = rng.integers(0, n_fake, n_fake), rng.integers(0, n_real, n_real)
            inside_pr, inside_dc = pr.inside_count[i_f], dc.inside_count[i_f]
            reps[b] = ((inside_pr > 0).mean(), pr.recalled[i_r].mean(), (1.0 / dc.k) * inside_dc.mean(),
                       dc.covered[i_r].mean())
            bar.update(1)
    return {name: _interval(getattr(value, name), reps[:, j], level)
            for j, name in enumerate(("precision", "recall", "density", "coverage"))}


def _prdc_of(pr: PerSample, dc: PerSample) -> PRDC:
    """Returns precision/recall from ``pr``'s per-sample quantities and density/coverage from ``dc``'s."""
    a, b = pr.aggregate(), dc.aggregate()
    return PRDC(a.precision, a.recall, b.density, b.coverage)
