"""Inception Score: torch-fidelity, a 40-digit mpmath version, analytic cases and bad input."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from fidkit.errors import FidkitWarning, InputError
from fidkit.inception_score import inception_score


def _mp_is(logits: np.ndarray, splits: int) -> tuple[float, float]:
    """openai/improved-gan's formula from logits, every step in 40-digit arithmetic."""
    with mpmath.workdps(40):
        probs = []
        for row in logits.tolist():
            e = [mpmath.exp(mpmath.mpf(v)) for v in row]
            z = sum(e)
            probs.append([v / z for v in e])
        n, k = len(probs), len(probs[0])
        scores = []
        for i in range(splits):
            part = probs[i * n // splits:(i + 1) * n // splits]
            q = [sum(p[j] for p in part) / len(part) for j in range(k)]
            kl = [sum(p[j] * (mpmath.log(p[j]) - mpmath.log(q[j])) for j in range(k)) for p in part]
            scores.append(mpmath.exp(sum(kl) / len(kl)))
        mean = sum(scores) / splits
        std = mpmath.sqrt(sum((s - mean) ** 2 for s in scores) / splits)
        return float(mean), float(std)


def test_against_mpmath() -> None:
    logits = np.random.default_rng(0).standard_normal((23, 5)) * 3
    mean, std = inception_score(logits, splits=4, shuffle_seed=None)
    ref_mean, ref_std = _mp_is(logits, 4)
    assert mean == pytest.approx(ref_mean, rel=1e-13)
    assert std == pytest.approx(ref_std, rel=1e-10)


@pytest.mark.peers
def test_shuffle_reproduces_torch_fidelity() -> None:
    import torch
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = np.random.default_rng(1).standard_normal((257, 10)) * 4
    peer = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=2020)
    mean, std = inception_score(logits, splits=10)  # the default seed is torch-fidelity's permutation
    assert mean == pytest.approx(peer["inception_score_mean"], rel=1e-13)
    assert std == pytest.approx(peer["inception_score_std"], rel=1e-11)
    other = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=7)
    assert inception_score(logits, splits=10, shuffle_seed=7)[0] == pytest.approx(
        other["inception_score_mean"], rel=1e-13)
    unshuffled = isc_features_to_metric(torch.from_numpy(logits), splits=7, shuffle=False)
    assert inception_score(logits, splits=7, shuffle_seed=None)[0] == pytest.approx(
        unshuffled["inception_score_mean"], rel=1e-13)


def _sorted_one_hot(classes: int = 10, per_class: int = 20) -> np.ndarray:
    """Confident logits sorted by class, as images read from class sub-folders in sorted path order."""
    return np.repeat(np.eye(classes) * 20.0, per_class, axis=0)


def test_default_does_not_depend_on_file_order() -> None:
    """Issue 12.1: 200 confident one-hot predictions sorted by class gave IS 1.00 (each split one class);
    by default the rows are shuffled with a fixed seed, so sorted and shuffled inputs score alike."""
    logits = _sorted_one_hot()
    shuffled = logits[np.random.default_rng(3).permutation(len(logits))]
    sorted_mean, _ = inception_score(logits)
    shuffled_mean, _ = inception_score(shuffled)
    # 10 splits of 20 random rows: each split sees most classes (9.37 for the shuffle, 8.2 here)
    assert sorted_mean > 7.0 and shuffled_mean > 7.0
    assert sorted_mean == pytest.approx(shuffled_mean, rel=0.2)


def test_original_formula_by_name() -> None:
    """shuffle_seed=None is openai/improved-gan's consecutive splits: sorted one-hot rows give 1."""
    mean, std = inception_score(_sorted_one_hot(), splits=10, shuffle_seed=None)
    assert mean == pytest.approx(1.0, abs=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_same_seed_same_number() -> None:
    logits = np.random.default_rng(4).standard_normal((101, 7)) * 3
    assert inception_score(logits, shuffle_seed=5) == inception_score(logits, shuffle_seed=5)
    assert inception_score(logits, shuffle_seed=5) != inception_score(logits, shuffle_seed=6)
    with pytest.raises(InputError, match="shuffle_seed"):
        inception_score(logits, shuffle_seed=-1)


def test_analytic_one_hot_and_uniform() -> None:
    k = 4
    one_hot = np.tile(np.eye(k), (6, 1))  # in this order every split holds each class equally often
    mean, std = inception_score(one_hot, splits=3, from_logits=False, shuffle_seed=None)
    assert mean == pytest.approx(k, rel=1e-14) and std == pytest.approx(0.0, abs=1e-13)
    assert inception_score(np.zeros((10, 7)), splits=2) == pytest.approx((1.0, 0.0), abs=1e-14)


def test_probs_equal_logits() -> None:
    logits = np.random.default_rng(2).standard_normal((30, 6))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert inception_score(probs, splits=3, from_logits=False) == pytest.approx(
        inception_score(logits, splits=3), rel=1e-12)


def test_bad_input() -> None:
    with pytest.raises(InputError, match=r"^logits: 4 images, fewer than --splits 5; pass --splits 4 or fewer "
                                         r"\(splits= in Python\)"):
        inception_score(np.zeros((4, 3)), splits=5)
    with pytest.raises(InputError, match=r"^fake: 3 images, fewer than --splits 10"):
        inception_score(np.zeros((3, 3)), name="fake")
    with pytest.raises(InputError, match="NaN"):
        inception_score(np.array([[0.0, np.nan]]), splits=1)
    with pytest.raises(InputError, match="sums to"):
        inception_score(np.full((3, 2), 0.3), splits=1, from_logits=False)
    with pytest.raises(InputError, match="< 0"):
        inception_score(np.array([[1.2, -0.2]]), splits=1, from_logits=False)
    with pytest.warns(FidkitWarning, match="look like probabilities"):
        inception_score(np.full((3, 4), 0.25), splits=1)


@pytest.mark.peers
@pytest.mark.parametrize(("seed", "n", "splits"), [(5, 8, 2), (3, 23, 10), (0, 30, 4)])
def test_torchmetrics_conventions_reproduce_its_inception_score(seed: int, n: int, splits: int) -> None:
    """rng='torch', parts='chunk', ddof=1: torchmetrics' InceptionScore after torch.manual_seed(seed) on the
    same float64 logits (23 rows in 10 chunks of 3 make 8 parts, 30 in 4 make 8/8/8/6)."""
    import torch
    from torchmetrics.image.inception import InceptionScore

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    logits = np.random.default_rng(seed + 1).normal(size=(n, 10)) * 3
    metric = InceptionScore(feature=Identity(), splits=splits)
    metric.update(torch.from_numpy(logits))
    torch.manual_seed(seed)
    tm_mean, tm_std = (float(v) for v in metric.compute())
    mean, std = inception_score(logits, splits, shuffle_seed=seed, rng="torch", parts="chunk", ddof=1)
    assert mean == pytest.approx(tm_mean, rel=1e-12)
    assert std == pytest.approx(tm_std, rel=1e-9)
    # the 40-digit formula on torch's permutation and Tensor.chunk's parts agrees with the same choice
    torch.manual_seed(seed)
    perm = torch.randperm(n).numpy()
    size = -(-n // splits)
    parts = [logits[perm][lo:lo + size] for lo in range(0, n, size)]
    scores = [_mp_is(part, 1)[0] for part in parts]
    assert mean == pytest.approx(float(np.mean(scores)), rel=1e-12)
    assert std == pytest.approx(float(np.std(scores, ddof=1)), rel=1e-9)


def test_torchmetrics_options_are_checked() -> None:
    logits = np.random.default_rng(0).normal(size=(6, 4))
    with pytest.raises(InputError, match="rng must be one of numpy, torch"):
        inception_score(logits, 2, rng="jax")
    with pytest.raises(InputError, match="parts must be one of floor, chunk"):
        inception_score(logits, 2, parts="ceil")
    with pytest.raises(InputError, match="too few for a std with ddof 1"):
        inception_score(logits, 1, ddof=1)
