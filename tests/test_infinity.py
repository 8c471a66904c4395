"""FID∞ / IS∞: the fit's points recomputed independently, the fit against scipy, sizes and warnings."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from fidkit.errors import FidkitWarning, InputError
from fidkit.frechet import FrechetReference, frechet_distance
from fidkit.inception_score import inception_score
from fidkit.infinity import _fit, fid_infinity, is_infinity


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((600, 6)), rng.standard_normal((500, 6)) * 1.3 + 0.2


def test_fid_infinity_points_and_fit() -> None:
    real, fake = _data()
    mu, sigma = real.mean(0), np.cov(real, rowvar=False)
    res = fid_infinity((mu, sigma), fake, num_points=6, min_size=100, seed=3)
    assert res.sizes == tuple(np.unique(np.linspace(100, 500, 6).astype(int)).tolist())
    rng = np.random.default_rng(3)
    expected = []
    for n in res.sizes:
        sub = fake[rng.permutation(500)[:n]]
        expected.append(frechet_distance(mu, sigma, sub.mean(0), np.cov(sub, rowvar=False)))
    assert res.scores == pytest.approx(expected, rel=1e-11)
    line = scipy.stats.linregress(1.0 / np.array(res.sizes), expected)
    assert res.value == pytest.approx(line.intercept, rel=1e-9)
    assert res.slope == pytest.approx(line.slope, rel=1e-9)
    assert float(res) == res.value and res.predict(100) == pytest.approx(res.value + res.slope / 100)
    same = fid_infinity(real, fake, num_points=6, min_size=100, seed=3)
    assert same.value == pytest.approx(res.value, rel=1e-10)
    ref = FrechetReference(mu, sigma)
    assert fid_infinity(ref, fake, sizes=res.sizes, seed=3) == res


def test_fit_recovers_exact_line() -> None:
    sizes = np.array([10, 20, 50, 100])
    res = _fit(sizes, 2.5 + 40.0 / sizes)
    assert res.value == pytest.approx(2.5, rel=1e-12) and res.slope == pytest.approx(40.0, rel=1e-12)


def test_is_infinity_points() -> None:
    logits = np.random.default_rng(1).standard_normal((400, 10)) * 2
    res = is_infinity(logits, sizes=[100, 200, 400], seed=5)
    rng = np.random.default_rng(5)
    expected = [inception_score(logits[rng.permutation(400)[:n]], splits=1)[0] for n in (100, 200, 400)]
    assert res.scores == pytest.approx(expected, rel=1e-13)
    line = scipy.stats.linregress(1.0 / np.array([100, 200, 400]), expected)
    assert res.value == pytest.approx(line.intercept, rel=1e-9)


def test_sizes_validation_and_warning() -> None:
    real, fake = _data()
    with pytest.raises(InputError, match="at least 2 distinct"):
        fid_infinity(real, fake, sizes=[100, 100])
    with pytest.raises(InputError, match="between 2 and the 500"):
        fid_infinity(real, fake, sizes=[100, 501])
    with pytest.raises(InputError, match="feature dimension 5"):
        fid_infinity(real, fake[:, :5])
    wide = np.random.default_rng(2).standard_normal((40, 30))
    with pytest.warns(FidkitWarning, match="fewer than the 30 feature dimensions"):
        fid_infinity(wide, wide[::-1] + 1.0, sizes=[20, 40])
