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
  as ``prdc``); a point exactly on the sphere is outside. `precision_recall` takes ``radius_inclusive=True``
  for the ``<=`` of StyleGAN (metrics/precision_recall.py), torch-fidelity (metric_prc.py) and the ADM
  evaluator (ManifoldEstimator), which count it inside.

Memory is O(block_size · `COLUMN_TILE` + N), not O(N²): distances are computed for ``block_size`` rows
against `COLUMN_TILE` columns at a time, the k smallest per row carried across tiles. Memory-mapped
features (`fidkit.featurestore`, ``np.load(mmap_mode="r")``) are read in float64 blocks, never copied whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import _validate, featurestore
from ._threads import progress_bar
from .errors import InputError
from .metrics import METRICS, flag

#: Default block: rows per distance block are chosen so that a block holds about this many float64s.
BLOCK_ELEMENTS = 1 << 23
#: Columns per distance tile: the other set is read this many rows at a time (4096 x 2048 float64: 64 MB).
COLUMN_TILE = 4096


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
    """Returns the squared row norms in float64, read block by block (`fidkit.featurestore.blocks`)."""
    out = np.empty(x.shape[0])
    for lo, block in featurestore.blocks(x):
        out[lo:lo + block.shape[0]] = np.einsum("ij,ij->i", block, block)
    return out


def _distances(xb: np.ndarray, xb_sq: np.ndarray, y: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """Returns the Euclidean distances between rows of ``xb`` and ``y`` (scikit-learn's order of operations)."""
    d = -2.0 * (xb @ y.T)
    d += xb_sq[:, None]
    d += y_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return np.sqrt(d, out=d)


def _column_tile(n_cols: int) -> int:
    return min(max(n_cols, 1), COLUMN_TILE)


def _rows_per_block(block_size: int | None, n_cols: int) -> int:
    if block_size is not None:
        return _validate.positive_int(block_size, "block_size")
    return max(1, BLOCK_ELEMENTS // _column_tile(n_cols))


def _tiles(xb: np.ndarray, xb_sq: np.ndarray, y: np.ndarray,
           y_sq: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yields (clo, chi, distances of the rows ``xb`` to rows clo:chi of ``y``) over `COLUMN_TILE`-wide tiles
    (the tiles depend only on the shapes, so in-memory and memory-mapped inputs give the same numbers)."""
    n, step = y.shape[0], _column_tile(y.shape[0])
    for clo in range(0, n, step):
        chi = min(clo + step, n)
        yield clo, chi, _distances(xb, xb_sq, featurestore.rows(y, clo, chi), y_sq[clo:chi])


def knn_radii(x: np.ndarray, k: int, *, block_size: int | None = None) -> np.ndarray:
    """Returns each row's distance to its k-th nearest other row of ``x`` (N,), computed blockwise."""
    return _knn_radii(featurestore.validated(x, "x"), (k,), block_size, None)[k]


def _knn_radii(x: np.ndarray, ks: Sequence[int], block_size: int | None,
               bar: Any) -> dict[int, np.ndarray]:
    """Returns {k: each row's distance to its k-th nearest other row} for several k, one distance pass.

    The (max k + 1) smallest distances of each row are kept across column tiles (a selection, exact:
    the k-th smallest of the union is the k-th smallest of the kept values)."""
    n = x.shape[0]
    ks = sorted(set(ks))
    keep = ks[-1] + 1
    sq = _sq_norms(x)
    rows = _rows_per_block(block_size, n)
    radii = {k: np.empty(n) for k in ks}
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        best = None
        for clo, chi, d in _tiles(featurestore.rows(x, lo, hi), sq[lo:hi], x, sq):
            own = np.arange(max(lo, clo), min(hi, chi))  # the rows' distances to themselves are 0
            d[own - lo, own - clo] = 0.0
            if d.shape[1] > keep:
                d = np.partition(d, keep - 1, axis=1)[:, :keep]
            if best is not None:
                d = np.concatenate([best, d], axis=1)
                d = np.partition(d, keep - 1, axis=1)[:, :keep] if d.shape[1] > keep else d
            best = d
        assert best is not None
        best = np.partition(best, ks, axis=1)
        for k in ks:
            radii[k][lo:hi] = best[:, k]
        if bar is not None:
            bar.update(hi - lo)
    return radii


def _check(real: object, fake: object, ks: Sequence[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Returns validated real and fake features; ``ks`` are the (metric, k) pairs asked for."""
    r = featurestore.validated(real, "real")
    f = featurestore.validated(fake, "fake")
    _validate.same_dim(r, f, "real", "fake")
    for metric, k in ks:
        opt = flag("k", metric)
        k = _validate.positive_int(k, f"{_TITLES[metric]} k ({opt})")
        for name, arr in (("real", r), ("fake", f)):
            if arr.shape[0] <= k:
                raise InputError(f"{name}: {arr.shape[0]} images cannot have {opt} {k} nearest neighbours "
                                 f"besides themselves ({_TITLES[metric]}); pass {opt} {arr.shape[0] - 1} or "
                                 f"less (k= in Python) or more images")
    return r, f


_TITLES = {"pr": "precision/recall", "dc": "density/coverage", "prdc": "PRDC"}


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
    r, f = _check(real, fake, (("prdc", k),))
    return _per_samples(r, f, (k,), {k}, block_size)[k]


def _per_samples(real: np.ndarray, fake: np.ndarray, ks: Sequence[int], recall_ks: set[int],
                 block_size: int | None, progress: bool = False, inclusive: bool = False) -> dict[int, PerSample]:
    """Returns {k: `PerSample`} for several k from one pass over the distances (recall only for
    ``recall_ks``: it needs the fake radii, a second N² pass); a progress bar counts rows with ``progress``;
    ``inclusive``: a point at exactly a radius is inside (``<=``), else outside (``<``)."""
    within = np.less_equal if inclusive else np.less
    ks = sorted(set(ks))
    n_real, n_fake = real.shape[0], fake.shape[0]
    with progress_bar(2 * n_real + (n_fake if recall_ks else 0), f"k-NN (k = {', '.join(map(str, ks))})",
                      progress, unit="row") as bar:
        r_real = _knn_radii(real, ks, block_size, bar)
        r_fake = _knn_radii(fake, sorted(recall_ks), block_size, bar) if recall_ks else {}
        real_sq, fake_sq = _sq_norms(real), _sq_norms(fake)
        rows = _rows_per_block(block_size, n_fake)
        inside_count = {k: np.zeros(n_fake, dtype=np.int64) for k in ks}  # real balls containing each fake
        recalled = {k: np.zeros(n_real, dtype=bool) for k in ks}         # real samples inside some fake ball
        covered = {k: np.zeros(n_real, dtype=bool) for k in ks}          # real balls containing some fake
        for lo in range(0, n_real, rows):
            hi = min(lo + rows, n_real)
            nearest = np.full(hi - lo, np.inf)
            for clo, chi, d in _tiles(featurestore.rows(real, lo, hi), real_sq[lo:hi], fake, fake_sq):
                np.minimum(nearest, d.min(axis=1), out=nearest)
                for k in ks:
                    inside = within(d, r_real[k][lo:hi, None])
                    inside_count[k][clo:chi] += inside.sum(axis=0)
                    if k in r_fake:
                        recalled[k][lo:hi] |= within(d, r_fake[k][None, clo:chi]).any(axis=1)
            for k in ks:
                covered[k][lo:hi] = within(nearest, r_real[k][lo:hi])
            bar.update(hi - lo)
    return {k: PerSample(inside_count[k], recalled[k], covered[k], k) for k in ks}


def _registry_k(metric: str) -> int:
    return int(METRICS[metric].defaults["k"])


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int | None = None, *,
                     block_size: int | None = None, progress: bool = False,
                     radius_inclusive: bool = False) -> PrecisionRecall:
    """Returns (precision, recall) of ``fake`` against ``real`` features with k-NN balls (Kynkäänniemi et al. 2019).

    Precision: the fraction of fake samples inside some real sample's k-NN ball; recall: the fraction of
    real samples inside some fake sample's k-NN ball (strict ``<``, as the ``prdc`` package; with
    ``radius_inclusive`` a point at exactly a radius is inside, ``<=``, as StyleGAN's ``compute_pr``,
    torch-fidelity's ``metric_prc`` and the ADM evaluator's ``ManifoldEstimator``: the two differ only on
    exact ties, e.g. duplicated samples). ``k`` None is the registry's default, k = 3, the paper's choice.
    ``block_size`` rows of distances are held at a time (default: about 64 MB); ``progress`` shows a bar
    over the distance rows.
    """
    k = _registry_k("pr") if k is None else k
    r, f = _check(real, fake, (("pr", k),))
    out = _per_samples(r, f, (k,), {k}, block_size, progress, bool(radius_inclusive))[k].aggregate()
    return PrecisionRecall(out.precision, out.recall)


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int | None = None, *,
                     block_size: int | None = None, progress: bool = False) -> DensityCoverage:
    """Returns (density, coverage) of ``fake`` against ``real`` features (Naeem et al. 2020).

    Density: the number of real k-NN balls containing a fake sample, averaged over fake samples and
    divided by k; coverage: the fraction of real samples whose k-NN ball contains some fake sample
    (strict ``<``, as the ``prdc`` package). ``k`` None is the registry's default, k = 5, the paper's choice.
    """
    k = _registry_k("dc") if k is None else k
    r, f = _check(real, fake, (("dc", k),))
    out = _per_samples(r, f, (k,), set(), block_size, progress)[k].aggregate()
    return DensityCoverage(out.density, out.coverage)


def prdc(real: np.ndarray, fake: np.ndarray, k: int | None = None, *, dc_k: int | None = None,
         block_size: int | None = None, progress: bool = False) -> PRDC:
    """Returns precision, recall, density and coverage, sharing the distance work.

    With ``k`` None, each pair at its registered default (`fidkit.metrics.METRICS`): precision/recall at
    k = 3 (Kynkäänniemi et al. 2019), density/coverage at k = 5 (Naeem et al. 2020), as ``fidkit score``
    reports them. With ``k`` given and ``dc_k`` None, all four at ``k``: equal to ``prdc.compute_prdc``
    (nearest_k=k). ``dc_k`` sets density/coverage's k on its own.
    """
    pr_k = _registry_k("pr") if k is None else k
    dc_k = (_registry_k("dc") if k is None else k) if dc_k is None else dc_k
    r, f = _check(real, fake, (("pr", pr_k), ("dc", dc_k)))
    ps = _per_samples(r, f, (pr_k, dc_k), {pr_k}, block_size, progress)
    pr, dc = ps[pr_k].aggregate(), ps[dc_k].aggregate()
    return PRDC(pr.precision, pr.recall, dc.density, dc.coverage)
