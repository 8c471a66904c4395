"""Returns the Kernel Inception Distance: the unbiased MMD² with a polynomial kernel, averaged over subsets.

Reference: M. Bińkowski, D. J. Sutherland, M. Arbel, A. Gretton, "Demystifying MMD GANs", ICLR 2018.
Kernel k(x, y) = (gamma * x·y + coef0) ** degree with gamma = 1/d by default (cubic: degree 3, coef0 1).
Estimator per subset of m samples from each side (the one of torch-fidelity and the StyleGAN metrics):

    MMD² = sum_{i≠j} k(x_i, x_j) / (m(m-1)) + sum_{i≠j} k(y_i, y_j) / (m(m-1)) - 2 sum_{i,j} k(x_i, y_j) / m²

Subsets are drawn as torch-fidelity draws them: ``rng = numpy.random.RandomState(seed)``, then for each
subset ``rng.choice(n1, m, replace=False)`` and ``rng.choice(n2, m, replace=False)``; with
``seed=2020`` (torch-fidelity's default) the subsets, and hence the numbers, are torch-fidelity's.
With ``rng="torch"`` they are drawn as torchmetrics' ``KernelInceptionDistance`` draws them: for each
subset ``torch.randperm(n1)[:m]`` then ``torch.randperm(n2)[:m]``, here on a private CPU
``torch.Generator`` seeded with ``seed`` (torchmetrics uses torch's global generator: its numbers are
fidkit's right after ``torch.manual_seed(seed)``). torch is imported only then.
"""

from __future__ import annotations

import numpy as np

from . import _validate, featurestore
from ._threads import parallel_map, progress_bar
from .errors import InputError
from .metrics import flag


def polynomial_kernel(x: np.ndarray, y: np.ndarray, *, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """Returns the (len(x), len(y)) matrix (gamma * x yᵀ + coef0) ** degree, gamma = 1/d if None.

    An integer power is taken by repeated multiplication in place, not ``**`` (numpy's ``pow`` per
    element cost more than the matrix product: 0.15 s of a 1000 x 1000 KID subset at d = 128); the
    results differ by an ulp or two per entry.
    """
    g = 1.0 / x.shape[1] if gamma is None else gamma
    t = x @ y.T
    t *= g
    t += coef0
    if isinstance(degree, int | np.integer) and 1 <= degree <= 8:
        base = t.copy() if degree > 1 else t
        for _ in range(int(degree) - 1):
            t *= base
        return t
    return t ** degree


def _offdiag_mean(k: np.ndarray, ids: np.ndarray | None, label: str = "features") -> float:
    """Returns the mean of ``k`` over pairs of different samples (by position, or by ``ids`` if given)."""
    m = k.shape[0]
    if ids is None:
        return (float(k.sum()) - float(np.trace(k))) / (m * (m - 1))
    # rows with one id are copies of one sample, so their kernel entries all equal that sample's diagonal
    # entry: the sum over same-id pairs is sum_id count² k_ii (O(m), where a pair mask is O(m²))
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    count = m * m - int((counts.astype(np.int64) ** 2).sum())
    if count == 0:
        raise InputError(f"{label}: a bootstrap resample drew KID's subset of {m} as {m} copies of one image, "
                         f"whose MMD² is undefined; pass more images, a larger {flag('subset_size')} "
                         f"(subset_size= in Python) or {flag('n_boot')} 0")
    same = float((counts.astype(np.float64) ** 2 * np.diagonal(k)[first]).sum())
    return (float(k.sum()) - same) / count


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, *, degree: int = 3, gamma: float | None = None,
                  coef0: float = 1.0, ids_x: np.ndarray | None = None,
                  ids_y: np.ndarray | None = None,
                  labels: tuple[str, str] = ("x", "y")) -> float:
    """Returns the unbiased MMD² estimate between samples ``x`` (m, d) and ``y`` (m', d) (Bińkowski et al. 2018).

    ``ids_x`` / ``ids_y`` (optional) give each row's original sample index; pairs with the same index
    are then excluded like the diagonal (for bootstrap resamples drawn with replacement); ``labels``
    name the two inputs in errors.
    """
    kw = {"degree": degree, "gamma": gamma, "coef0": coef0}
    k_xx = polynomial_kernel(x, x, **kw)
    k_yy = polynomial_kernel(y, y, **kw)
    k_xy = polynomial_kernel(x, y, **kw)
    return (_offdiag_mean(k_xx, ids_x, labels[0]) + _offdiag_mean(k_yy, ids_y, labels[1])
            - 2.0 * float(k_xy.mean()))


def _check(features1: object, features2: object, subset_size: int, degree: int, gamma: float | None,
           labels: tuple[str, str] = ("features1", "features2")) -> tuple[np.ndarray, np.ndarray]:
    l1, l2 = labels
    f1 = featurestore.validated(features1, l1)  # a memory-mapped input stays on disk; subsets read rows
    f2 = featurestore.validated(features2, l2)
    _validate.same_dim(f1, f2, l1, l2)
    _validate.positive_int(subset_size, f"KID subset size ({flag('subset_size')})", minimum=2)
    _validate.positive_int(degree, "degree")
    if gamma is not None and not (np.isfinite(gamma) and gamma > 0):
        raise InputError(f"KID: expected gamma > 0 or None (1/d), received {gamma!r}")
    for name, f in ((l1, f1), (l2, f2)):
        if f.shape[0] < subset_size:
            most = min(f1.shape[0], f2.shape[0])
            raise InputError(f"{name}: {f.shape[0]} images, fewer than KID's {flag('subset_size')} "
                             f"{subset_size}; pass {flag('subset_size')} {most} or fewer (subset_size= in "
                             f"Python; subsets are drawn without replacement, as torch-fidelity) or more images")
    return f1, f2


def subsets_vary(n1: int, n2: int, subsets: int, subset_size: int) -> bool:
    """Returns whether KID's subsets can differ from one another, i.e. whether their std says anything:
    with one subset, or a subset size equal to both sample sizes (every subset is the whole sample, and
    the std is rounding, ~1e-16), it does not."""
    return subsets > 1 and subset_size < max(n1, n2)


#: How KID's subsets can be drawn (`kid_subset_values`): numpy's RandomState (torch-fidelity, clean-fid,
#: StyleGAN) or torch.randperm (torchmetrics).
KID_RNGS = ("numpy", "torch")


def _subset_draws(n1: int, n2: int, subsets: int, subset_size: int, seed: int,
                  rng: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Returns the (rows of features1, rows of features2) of each subset, drawn in order (module docstring)."""
    if rng == "numpy":
        state = np.random.RandomState(seed)
        return [(state.choice(n1, subset_size, replace=False), state.choice(n2, subset_size, replace=False))
                for _ in range(subsets)]
    if rng != "torch":
        raise InputError(f"KID: rng must be one of {', '.join(KID_RNGS)}, received {rng!r}")
    torch = _import_torch("KID's rng='torch' (torchmetrics' subsets)")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return [(torch.randperm(n1, generator=gen)[:subset_size].numpy(),
             torch.randperm(n2, generator=gen)[:subset_size].numpy()) for _ in range(subsets)]


def _import_torch(what: str):
    """Returns the torch module, or raises `InputError` saying that ``what`` needs it."""
    try:
        import torch
    except ImportError:
        raise InputError(f"{what} draws with torch.randperm, and torch is not installed; install torch "
                         f"(pip install torch) or use rng='numpy'") from None
    return torch


def kid_subset_values(features1: np.ndarray, features2: np.ndarray, subsets: int = 100,
                      subset_size: int = 1000, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0, seed: int = 0, *,
                      labels: tuple[str, str] = ("features1", "features2"),
                      progress: bool = False, rng: str = "numpy") -> np.ndarray:
    """Returns the (subsets,) per-subset unbiased MMD² values whose mean and std `kid` reports, computed
    one subset per core (`fidkit._threads.parallel_map`). ``rng``: "numpy" (``RandomState(seed)``,
    torch-fidelity's draws) or "torch" (``torch.randperm`` on a generator seeded with ``seed``,
    torchmetrics' draws; needs torch, else `InputError`)."""
    f1, f2 = _check(features1, features2, subset_size, degree, gamma, labels)
    subsets = _validate.positive_int(subsets, f"KID subsets ({flag('subsets')})")
    # drawn in order first: the numbers do not depend on the threads
    draws = _subset_draws(f1.shape[0], f2.shape[0], subsets, subset_size, seed, rng)
    with progress_bar(subsets, "KID subsets", progress, unit="subset") as bar:
        return np.array(parallel_map(
            lambda ij: mmd2_unbiased(featurestore.take(f1, ij[0]), featurestore.take(f2, ij[1]),
                                     degree=degree, gamma=gamma, coef0=coef0),
            draws, bar))


def kid(features1: np.ndarray, features2: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
        seed: int = 0, *, labels: tuple[str, str] = ("features1", "features2"),
        progress: bool = False, rng: str = "numpy") -> tuple[float, float]:
    """Returns (mean, std) of the unbiased polynomial-kernel MMD² over random subsets (KID; Bińkowski et al. 2018).

    ``features1`` (n1, d) and ``features2`` (n2, d) are computed in float64; ``subsets`` draws of
    ``subset_size`` samples per side without replacement (see the module docstring for the order of the
    draws). The std is the population std (ddof=0) over subsets, as torch-fidelity reports it; it
    describes the spread of subset estimates, not the error of the mean. KID is unbiased, so values
    slightly below 0 occur for near-identical distributions and are kept. When the subsets cannot differ
    (`subsets_vary` is False: one subset, or ``subset_size`` equal to both sample sizes) the std is
    rounding, not an uncertainty; `fidkit.score` then reports it as None. ``labels`` name the two inputs
    in errors (`fidkit.score` passes "real", "fake"). ``rng``: how the subsets are drawn, "numpy"
    (default) or "torch" (torchmetrics' draws; see `kid_subset_values`).
    """
    values = kid_subset_values(features1, features2, subsets, subset_size, degree, gamma, coef0, seed,
                               labels=labels, progress=progress, rng=rng)
    return float(values.mean()), float(values.std())
