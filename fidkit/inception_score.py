"""Returns the Inception Score (mean, std over splits) of class logits or probabilities.

Reference: T. Salimans, I. Goodfellow, W. Zaremba, V. Cheung, A. Radford, X. Chen, "Improved Techniques
for Training GANs", NeurIPS 2016; formula as in openai/improved-gan ``inception_score.py``: the samples
are cut into ``splits`` parts (part i is rows ``i*N//splits`` to ``(i+1)*N//splits``), each part scores
exp(mean_x KL(p(y|x) || p(y))) with p(y) that part's mean prediction, and the result is the mean and the
population standard deviation (ddof=0) of the part scores. Computed in float64.

Order of the rows. The original code cuts the rows in the order given, so the score depends on how the
files happen to be laid out: images read from class sub-folders (sorted paths) put one class in each
part, and each part's marginal p(y) is then nearly one-hot (IS near 1 for a perfect generator). fidkit
therefore permutes the rows first, by default with ``numpy.random.RandomState(2020).permutation(N)``:
torch-fidelity's ``isc_features_to_metric(shuffle=True, rng_seed=2020)`` (its defaults) draws exactly
this permutation, so with the default seed fidkit gives torch-fidelity's numbers. ``shuffle_seed=None``
is the original, order-dependent formula (consecutive parts, openai/improved-gan).

torchmetrics' ``InceptionScore`` differs in three ways, each an option here: it permutes with
``torch.randperm(N)`` on torch's global generator (``rng="torch"``: the same permutation from a private
generator seeded with ``shuffle_seed``, i.e. torchmetrics' right after ``torch.manual_seed(shuffle_seed)``),
cuts the parts with ``Tensor.chunk(splits)`` (``parts="chunk"``: parts of ceil(N/splits) rows, the last
shorter, and fewer than ``splits`` parts when they run out) and reports the std with ddof 1 (``ddof=1``).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.special

from . import _validate, featurestore
from .errors import FidkitWarning, InputError
from .metrics import flag

#: Rows of probabilities must sum to 1 within this tolerance (float32 softmax output reaches ~1e-6).
PROB_SUM_ATOL = 1e-4


def _check_rows(x: np.ndarray, from_logits: bool, name: str) -> None:
    """Raises `InputError` for probabilities that are negative or do not sum to 1, and warns for logits
    that look like probabilities; reads ``x`` block by block (`fidkit.featurestore.blocks`), so the row
    numbers in messages are the input's own."""
    if from_logits:
        if x.shape[1] > 1 and all(b.min() >= 0 and np.allclose(b.sum(axis=1), 1.0, atol=PROB_SUM_ATOL)
                                  for _, b in featurestore.blocks(x)):
            warnings.warn(f"{name}: every row is non-negative and sums to 1, so these look like "
                          "probabilities but are being treated as logits; pass from_logits=False if they "
                          "are probabilities", FidkitWarning, stacklevel=3)
        return
    low: tuple[float, int, int] | None = None  # the smallest entry and where it is
    for lo, b in featurestore.blocks(x):
        i, j = (int(v) for v in np.unravel_index(np.argmin(b), b.shape))
        if low is None or b[i, j] < low[0]:
            low = (float(b[i, j]), lo + i, j)
    if low is not None and low[0] < 0:
        raise InputError(f"{name}: from_logits=False but {name}[{low[1]},{low[2]}] = {low[0]:.4g} < 0; "
                         "probabilities are non-negative — pass from_logits=True for logits")
    for lo, b in featurestore.blocks(x):
        sums = b.sum(axis=1)
        bad = np.abs(sums - 1.0) > PROB_SUM_ATOL
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"{name}: from_logits=False but row {lo + i} sums to {sums[i]:.6g}, not 1; "
                             "pass softmax probabilities, or logits with from_logits=True")


def _log_probs(x: np.ndarray, from_logits: bool) -> np.ndarray:
    """Returns log p(y|x) (N, k) in float64 from checked (`_check_rows`) logits or probabilities, row by row."""
    if from_logits:
        return scipy.special.log_softmax(x, axis=1)
    sums = x.sum(axis=1)
    with np.errstate(divide="ignore"):
        return np.log(x / sums[:, None])


#: The default permutation seed: torch-fidelity's ``rng_seed`` default, so the default numbers are its own.
DEFAULT_SHUFFLE_SEED = 2020


#: How the rows can be permuted (``rng``) and cut into parts (``parts``); see the module docstring.
IS_RNGS = ("numpy", "torch")
IS_PARTS = ("floor", "chunk")


def _permutation(n: int, seed: int, rng: str) -> np.ndarray:
    if rng == "numpy":
        return np.random.RandomState(seed).permutation(n)
    try:
        import torch
    except ImportError:
        raise InputError("IS with rng='torch' (torchmetrics' permutation) draws with torch.randperm, and torch "
                         "is not installed; install torch (pip install torch) or use rng='numpy'") from None
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return torch.randperm(n, generator=gen).numpy()


def _part_bounds(n: int, splits: int, parts: str) -> list[tuple[int, int]]:
    """Returns the (start, stop) rows of each part: ``i*n//splits`` ("floor") or ``Tensor.chunk`` ("chunk")."""
    if parts == "floor":
        return [(i * n // splits, (i + 1) * n // splits) for i in range(splits)]
    size = -(-n // splits)  # torch.chunk: ceil(n / splits) rows per part
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def inception_score(logits_or_probs: np.ndarray, splits: int = 10, *, from_logits: bool = True,
                    shuffle_seed: int | None = DEFAULT_SHUFFLE_SEED,
                    name: str | None = None, rng: str = "numpy", parts: str = "floor",
                    ddof: int = 0) -> tuple[float, float]:
    """Returns (mean, std) of the Inception Score over ``splits`` parts (Salimans et al. 2016).

    ``logits_or_probs`` is (N, k): logits (default) or, with ``from_logits=False``, softmax
    probabilities. The rows are first permuted with ``numpy.random.RandomState(shuffle_seed)``
    (default 2020: torch-fidelity's permutation and numbers), so the parts do not depend on the order
    of the files; ``shuffle_seed=None`` keeps the given order, the original openai/improved-gan
    formula. ``name`` labels the input in error messages (e.g. "fake"). Zero probabilities contribute
    0 (the limit of p log p). ``rng`` ("numpy" or "torch": ``torch.randperm``, which needs torch),
    ``parts`` ("floor" or "chunk") and ``ddof`` (the std's divisor is parts - ddof; 0 or 1) select
    torchmetrics' conventions (module docstring); the defaults are torch-fidelity's. Raises `InputError`
    for bad input or options.
    """
    label = name or ("logits" if from_logits else "probs")
    x = featurestore.validated(logits_or_probs, label, min_samples=1)  # memory-mapped: read part by part
    splits = _validate.positive_int(splits, f"splits ({flag('splits')})")
    if shuffle_seed is not None:
        shuffle_seed = _validate.positive_int(shuffle_seed, "shuffle_seed", minimum=0)
    if rng not in IS_RNGS:
        raise InputError(f"IS: rng must be one of {', '.join(IS_RNGS)}, received {rng!r}")
    if parts not in IS_PARTS:
        raise InputError(f"IS: parts must be one of {', '.join(IS_PARTS)}, received {parts!r}")
    if ddof not in (0, 1):
        raise InputError(f"IS: ddof must be 0 or 1, received {ddof!r}")
    n = x.shape[0]
    if n < splits:
        raise InputError(f"{label}: {n} images, fewer than {flag('splits')} {splits}; pass {flag('splits')} "
                         f"{n} or fewer (splits= in Python) or more images")
    _check_rows(x, from_logits, label)
    order = _permutation(n, shuffle_seed, rng) if shuffle_seed is not None else None
    bounds = _part_bounds(n, splits, parts)
    if len(bounds) - ddof < 1:
        raise InputError(f"{label}: {n} images make {len(bounds)} part(s), too few for a std with ddof "
                         f"{ddof}; pass more images or a larger {flag('splits')}")
    scores = np.empty(len(bounds))
    for i, (lo, hi) in enumerate(bounds):
        # one part in memory at a time; the row-wise softmax does not depend on the other rows
        part = featurestore.take(x, order[lo:hi]) if order is not None else featurestore.rows(x, lo, hi)
        log_p_part = _log_probs(part, from_logits)
        p_part = np.exp(log_p_part)
        # p log p with p = 0 is 0; where p > 0 the marginal q > 0 too, so the masked terms are finite.
        with np.errstate(divide="ignore", invalid="ignore"):
            log_q = np.log(p_part.mean(axis=0))
            kl = np.where(p_part > 0, p_part * (log_p_part - log_q), 0.0).sum(axis=1)
        scores[i] = np.exp(kl.mean())
    return float(scores.mean()), float(scores.std(ddof=ddof))
