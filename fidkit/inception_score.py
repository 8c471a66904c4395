"""Returns the Inception Score (mean, std over splits) of class logits or probabilities.

Reference: T. Salimans, I. Goodfellow, W. Zaremba, V. Cheung, A. Radford, X. Chen, "Improved Techniques
for Training GANs", NeurIPS 2016; formula as in openai/improved-gan ``inception_score.py``: the samples
are cut into ``splits`` consecutive parts (part i is rows ``i*N//splits`` to ``(i+1)*N//splits``), each
part scores exp(mean_x KL(p(y|x) || p(y))) with p(y) that part's mean prediction, and the result is the
mean and the population standard deviation (ddof=0) of the part scores. Computed in float64.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.special

from . import _validate
from .errors import FidkitWarning, InputError

#: Rows of probabilities must sum to 1 within this tolerance (float32 softmax output reaches ~1e-6).
PROB_SUM_ATOL = 1e-4


def _log_probs(x: np.ndarray, from_logits: bool, name: str) -> np.ndarray:
    """Returns log p(y|x) (N, k) in float64 from logits or probabilities."""
    if from_logits:
        sums = x.sum(axis=1)
        if x.shape[1] > 1 and x.min() >= 0 and np.allclose(sums, 1.0, atol=PROB_SUM_ATOL):
            warnings.warn(f"{name}: every row is non-negative and sums to 1, so these look like "
                          "probabilities but are being treated as logits; pass from_logits=False if they "
                          "are probabilities", FidkitWarning, stacklevel=3)
        return scipy.special.log_softmax(x, axis=1)
    if x.min() < 0:
        i, j = (int(v) for v in np.unravel_index(np.argmin(x), x.shape))
        raise InputError(f"{name}: from_logits=False but {name}[{i},{j}] = {x[i, j]:.4g} < 0; "
                         "probabilities are non-negative — pass from_logits=True for logits")
    sums = x.sum(axis=1)
    bad = np.abs(sums - 1.0) > PROB_SUM_ATOL
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{name}: from_logits=False but row {i} sums to {sums[i]:.6g}, not 1; "
                         "pass softmax probabilities, or logits with from_logits=True")
    with np.errstate(divide="ignore"):
        return np.log(x / sums[:, None])


def inception_score(logits_or_probs: np.ndarray, splits: int = 10, *, from_logits: bool = True,
                    shuffle: bool = False, seed: int = 2020) -> tuple[float, float]:
    """Returns (mean, std) of the Inception Score over ``splits`` consecutive parts (Salimans et al. 2016).

    ``logits_or_probs`` is (N, k): logits (default) or, with ``from_logits=False``, softmax
    probabilities. ``shuffle=True`` first permutes the rows with
    ``numpy.random.RandomState(seed).permutation(N)``, which with the default seed 2020 reproduces
    torch-fidelity's ``inception_score_mean`` / ``_std`` exactly; the default (no shuffle) is
    openai/improved-gan's order. Zero probabilities contribute 0 (the limit of p log p).
    """
    name = "logits" if from_logits else "probs"
    x = _validate.features(logits_or_probs, name, min_samples=1)
    splits = _validate.positive_int(splits, "splits")
    n = x.shape[0]
    if n < splits:
        raise InputError(f"{name}: {n} samples cannot be cut into splits={splits} non-empty parts; "
                         f"pass splits <= {n} or more samples")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    log_p = _log_probs(x, from_logits, name)
    p = np.exp(log_p)
    scores = np.empty(splits)
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        p_part, log_p_part = p[lo:hi], log_p[lo:hi]
        # p log p with p = 0 is 0; where p > 0 the marginal q > 0 too, so the masked terms are finite.
        with np.errstate(divide="ignore", invalid="ignore"):
            log_q = np.log(p_part.mean(axis=0))
            kl = np.where(p_part > 0, p_part * (log_p_part - log_q), 0.0).sum(axis=1)
        scores[i] = np.exp(kl.mean())
    return float(scores.mean()), float(scores.std())
