"""Returns k-nearest-neighbour manifold metrics: precision/recall and density/coverage.

References: T. Kynkäänniemi, T. Karras, S. Laine, J. Lehtinen, T. Aila, "Improved Precision and Recall
Metric for Assessing Generative Models", NeurIPS 2019 (precision, recall); M. F. Naeem, S. J. Oh, Y. Uh,
Y. Choi, J. Yoo, "Reliable Fidelity and Diversity Metrics for Generative Models", ICML 2020 (density,
coverage). Numbers equal those of the ``prdc`` package (clovaai/generative-evaluation-prdc) on the same
features:

- Distances are Euclidean, computed as sqrt(max(|x|² + |y|² - 2 x·y, 0)) in float64 like scikit-learn's
  ``pairwise_distances``; a sample's distance to itself is 0.
- A sample's radius is the distance to its k-th nearest neighbour in its own set, the sample itself not
  counted (the (k+1)-th smallest distance including the zero self-distance), duplicates counted.
- Tie convention: a point is inside a ball only if its distance is strictly less than the radius (``<``,
  as ``prdc``); a point exactly on the sphere is outside.

Memory is O(block_size · N), not O(N²): distances are computed for ``block_size`` rows at a time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _validate
from .errors import InputError

#: Default block: rows per distance block are chosen so that a block holds about this many float64s.
BLOCK_ELEMENTS = 1 << 23


class PrecisionRecall(NamedTuple):
    """Precision and recall (Kynkäänniemi et al. 2019), each in [0, 1]."""

    precision: float
    recall: float


class DensityCoverage(NamedTuple):
    """Density (unbounded above, 1 on average for identical distributions) and coverage in [0, 1] (Naeem et al. 2020)."""

    density: float
    coverage: float


class PRDC(NamedTuple):
    """Precision, recall, density and coverage for one k, as the ``prdc`` package's ``compute_prdc`` returns them."""

    precision: float
    recall: float
    density: float
    coverage: float


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _distances(xb: np.ndarray, xb_sq: np.ndarray, y: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """Returns the Euclidean distances between rows of ``xb`` and ``y`` (scikit-learn's order of operations)."""
    d = -2.0 * (xb @ y.T)
    d += xb_sq[:, None]
    d += y_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return np.sqrt(d, out=d)


def _rows_per_block(block_size: int | None, n_cols: int) -> int:
    if block_size is not None:
        return _validate.positive_int(block_size, "block_size")
    return max(1, BLOCK_ELEMENTS // max(n_cols, 1))


def knn_radii(x: np.ndarray, k: int, *, block_size: int | None = None) -> np.ndarray:
    """Returns each row's distance to its k-th nearest other row of ``x`` (N,), computed blockwise."""
    n = x.shape[0]
    sq = _sq_norms(x)
    rows = _rows_per_block(block_size, n)
    radii = np.empty(n)
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        d = _distances(x[lo:hi], sq[lo:hi], x, sq)
        d[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        radii[lo:hi] = np.partition(d, k, axis=1)[:, k]
    return radii


def _check(real: object, fake: object, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    r = _validate.features(real, "real")
    f = _validate.features(fake, "fake")
    _validate.same_dim(r, f, "real", "fake")
    k = _validate.positive_int(k, "k")
    for name, arr in (("real", r), ("fake", f)):
        if arr.shape[0] <= k:
            raise InputError(f"{name}: {arr.shape[0]} samples cannot have k={k} nearest neighbours "
                             f"besides themselves; pass k < {arr.shape[0]} or more samples")
    return r, f, k


class PerSample(NamedTuple):
    """The per-sample quantities the four metrics average: real balls containing each fake sample (n_fake,),
    and for each real sample whether some fake ball holds it (recall) and whether its ball holds some fake
    sample (coverage), both (n_real,)."""

    inside_count: np.ndarray
    recalled: np.ndarray
    covered: np.ndarray
    k: int

    def aggregate(self) -> PRDC:
        """Returns the four metrics from the per-sample quantities (prdc's order of operations)."""
        return PRDC(precision=float((self.inside_count > 0).mean()),
                    recall=float(self.recalled.mean()),
                    density=float((1.0 / self.k) * self.inside_count.mean()),
                    coverage=float(self.covered.mean()))


def per_sample(real: np.ndarray, fake: np.ndarray, k: int = 5, *, block_size: int | None = None) -> PerSample:
    """Returns the per-sample quantities behind precision, recall, density and coverage for one ``k``."""
    r, f, k = _check(real, fake, k)
    return _per_sample(r, f, k, block_size, need_recall=True)


def _prdc(real: np.ndarray, fake: np.ndarray, k: int, block_size: int | None,
          need_recall: bool) -> PRDC:
    out = _per_sample(real, fake, k, block_size, need_recall).aggregate()
    return out if need_recall else out._replace(recall=float("nan"))


def _per_sample(real: np.ndarray, fake: np.ndarray, k: int, block_size: int | None,
                need_recall: bool) -> PerSample:
    r_real = knn_radii(real, k, block_size=block_size)
    r_fake = knn_radii(fake, k, block_size=block_size) if need_recall else None
    real_sq, fake_sq = _sq_norms(real), _sq_norms(fake)
    n_real, n_fake = real.shape[0], fake.shape[0]
    rows = _rows_per_block(block_size, n_fake)
    inside_count = np.zeros(n_fake, dtype=np.int64)   # real balls containing each fake sample
    recalled = np.zeros(n_real, dtype=bool)           # real samples inside some fake ball
    covered = np.zeros(n_real, dtype=bool)            # real balls containing some fake sample
    for lo in range(0, n_real, rows):
        hi = min(lo + rows, n_real)
        d = _distances(real[lo:hi], real_sq[lo:hi], fake, fake_sq)
        inside = d < r_real[lo:hi, None]
        inside_count += inside.sum(axis=0)
        covered[lo:hi] = d.min(axis=1) < r_real[lo:hi]
        if r_fake is not None:
            recalled[lo:hi] = (d < r_fake[None, :]).any(axis=1)
    return PerSample(inside_count, recalled, covered, k)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, *,
                     block_size: int | None = None) -> PrecisionRecall:
    """Returns (precision, recall) of ``fake`` against ``real`` features with k-NN balls (Kynkäänniemi et al. 2019).

    Precision: the fraction of fake samples inside some real sample's k-NN ball; recall: the fraction of
    real samples inside some fake sample's k-NN ball (strict ``<``, as the ``prdc`` package). k=3 is the
    paper's choice. ``block_size`` rows of distances are held at a time (default: about 64 MB).
    """
    r, f, k = _check(real, fake, k)
    out = _prdc(r, f, k, block_size, need_recall=True)
    return PrecisionRecall(out.precision, out.recall)


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5, *,
                     block_size: int | None = None) -> DensityCoverage:
    """Returns (density, coverage) of ``fake`` against ``real`` features (Naeem et al. 2020).

    Density: the number of real k-NN balls containing a fake sample, averaged over fake samples and
    divided by k; coverage: the fraction of real samples whose k-NN ball contains some fake sample
    (strict ``<``, as the ``prdc`` package). k=5 is the paper's choice.
    """
    r, f, k = _check(real, fake, k)
    out = _prdc(r, f, k, block_size, need_recall=False)
    return DensityCoverage(out.density, out.coverage)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, *, block_size: int | None = None) -> PRDC:
    """Returns precision, recall, density and coverage for one ``k``, equal to ``prdc.compute_prdc``, sharing the distance work."""
    r, f, k = _check(real, fake, k)
    return _prdc(r, f, k, block_size, need_recall=True)
