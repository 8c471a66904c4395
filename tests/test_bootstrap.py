"""Bootstrap intervals and mean ± std: replicates recomputed independently, ordering, bad input."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from fidkit.bootstrap import (
    ConfidenceInterval,
    bootstrap_fid,
    bootstrap_kid,
    bootstrap_prdc,
    mean_std,
    over_seeds,
)
from fidkit.errors import FidkitWarning, InputError
from fidkit.frechet import FrechetReference, frechet_distance
from fidkit.kid import kid
from fidkit.prdc import prdc


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((300, 5)), rng.standard_normal((200, 5)) * 1.2 + 0.1


def _fid(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def test_bootstrap_fid_fixed_reference_replicates() -> None:
    real, fake = _data()
    mu, sigma = real.mean(0), np.cov(real, rowvar=False)
    with pytest.warns(FidkitWarning, match="biased upwards"):
        ci = bootstrap_fid((mu, sigma), fake, n_boot=30, level=0.9, seed=4)
    rng = np.random.default_rng(4)
    reps = [frechet_distance(mu, sigma, s.mean(0), np.cov(s, rowvar=False))
            for s in (fake[rng.integers(0, 200, 200)] for _ in range(30))]
    assert ci.value == pytest.approx(frechet_distance(mu, sigma, fake.mean(0), np.cov(fake, rowvar=False)))
    q_lo, q_mid, q_hi = np.percentile(reps, [5, 50, 95])
    assert (ci.low, ci.high) == pytest.approx((max(0.0, ci.value + q_lo - q_mid), ci.value + q_hi - q_mid),
                                              rel=1e-10)
    assert ci.low <= ci.value <= ci.high and ci.level == 0.9 and ci.n_boot == 30
    assert "90% bootstrap" in str(ci)


def test_bootstrap_fid_resamples_both_sides() -> None:
    real, fake = _data()
    with pytest.warns(FidkitWarning):
        ci = bootstrap_fid(real, fake, n_boot=20, seed=1)
    rng = np.random.default_rng(1)
    reps = [_fid(real[rng.integers(0, 300, 300)], fake[rng.integers(0, 200, 200)]) for _ in range(20)]
    assert ci.value == pytest.approx(_fid(real, fake), rel=1e-12)
    q_lo, q_mid, q_hi = np.percentile(reps, [2.5, 50, 97.5])
    assert (ci.low, ci.high) == pytest.approx((max(0.0, ci.value + q_lo - q_mid), ci.value + q_hi - q_mid),
                                              rel=1e-10)
    with pytest.warns(FidkitWarning):
        again = bootstrap_fid(FrechetReference(real.mean(0), np.cov(real, rowvar=False)), fake, n_boot=20)
    assert isinstance(again, ConfidenceInterval) and again.value == pytest.approx(ci.value, rel=1e-12)


def test_bootstrap_fid_interval_holds_the_estimate_when_replicates_are_biased() -> None:
    # n/d = 4: every resample's FID is biased upwards, so the percentile interval misses the estimate.
    rng = np.random.default_rng(7)
    real, fake = rng.standard_normal((200, 50)), rng.standard_normal((200, 50)) * 1.1
    with pytest.warns(FidkitWarning):
        ci = bootstrap_fid(real, fake, n_boot=40, seed=3)
    rng = np.random.default_rng(3)
    reps = [_fid(real[rng.integers(0, 200, 200)], fake[rng.integers(0, 200, 200)]) for _ in range(40)]
    assert np.percentile(reps, 2.5) > ci.value  # the resampling shift the interval removes
    assert ci.low <= ci.value <= ci.high
    assert ci.high - ci.low == pytest.approx(float(np.diff(np.percentile(reps, [2.5, 97.5]))[0]), rel=1e-10)


def test_bootstrap_kid() -> None:
    real, fake = _data()
    ci = bootstrap_kid(real, fake, n_boot=20, subsets=3, subset_size=50, seed=2)
    assert ci.value == kid(real, fake, subsets=3, subset_size=50, seed=2)[0]
    assert ci.low < ci.high and ci.n_boot == 20
    assert ci.low < kid(real, fake, subsets=50, subset_size=100)[0] < ci.high


def test_mean_std() -> None:
    vals = [1.0, 2.5, 4.0, 3.5]
    ms = mean_std(vals)
    assert (ms.mean, ms.std, ms.n) == (pytest.approx(statistics.mean(vals)),
                                      pytest.approx(statistics.stdev(vals)), 4)
    assert str(ms).startswith("2.75 ±")
    assert over_seeds(lambda s: float(s), [1, 2, 3]).mean == 2.0


def test_bad_input() -> None:
    real, fake = _data()
    with pytest.raises(InputError, match="level"):
        bootstrap_kid(real, fake, level=1.5, subset_size=10)
    with pytest.raises(InputError, match="n_boot"):
        bootstrap_fid((real.mean(0), np.cov(real, rowvar=False)), fake, n_boot=1)
    with pytest.raises(InputError, match="at least 2 scores"):
        mean_std([1.0])
    with pytest.raises(InputError, match="NaN"):
        mean_std([1.0, float("nan")])


def test_bootstrap_prdc_against_brute_force_indicators() -> None:
    from scipy.spatial.distance import cdist

    real, fake = _data()
    k = 3
    d_rr, d_ff, d_rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    r_real, r_fake = np.sort(d_rr, axis=1)[:, k], np.sort(d_ff, axis=1)[:, k]
    inside = (d_rf < r_real[:, None]).sum(axis=0)           # per fake sample
    recalled = (d_rf < r_fake[None, :]).any(axis=1)         # per real sample
    covered = (d_rf < r_real[:, None]).any(axis=1)          # per real sample
    cis = bootstrap_prdc(real, fake, k=k, n_boot=50, level=0.9, seed=5)
    assert tuple(cis[m].value for m in ("precision", "recall", "density", "coverage")) == tuple(prdc(real, fake, k))
    rng = np.random.default_rng(5)
    reps = []
    for _ in range(50):
        i_f, i_r = rng.integers(0, 200, 200), rng.integers(0, 300, 300)
        reps.append(((inside[i_f] > 0).mean(), recalled[i_r].mean(), inside[i_f].mean() / k, covered[i_r].mean()))
    reps = np.array(reps)
    for j, name in enumerate(("precision", "recall", "density", "coverage")):
        lo, hi = np.percentile(reps[:, j], [5, 95])
        assert (cis[name].low, cis[name].high) == pytest.approx((lo, hi), rel=1e-12, abs=1e-15)
        assert cis[name].low <= cis[name].value <= cis[name].high
