"""Streaming statistics: StatsAccumulator over batches against numpy.cov on the whole array, same run.

Run: ``pytest benchmarks/test_bench_stats.py --benchmark-columns=min,mean,rounds``. Both compute the
float64 mean and unbiased covariance of the same (N, d) features; the accumulator never holds more
than one batch plus O(d²), numpy.cov needs the whole array (and a centred float64 copy of it).
"""

from __future__ import annotations

import numpy as np
import pytest

from fidkit.stats import StatsAccumulator

N = 10_000


def _features(d: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((N, d)) + 3.0).astype(np.float32)  # float32, as extractors return


def _streaming(x: np.ndarray, batch: int = 500):
    acc = StatsAccumulator()
    for lo in range(0, len(x), batch):
        acc.update(x[lo:lo + batch])
    return acc.stats()


def _numpy(x: np.ndarray):
    x64 = x.astype(np.float64)
    return x64.mean(axis=0), np.cov(x64, rowvar=False)


@pytest.mark.parametrize("d", [128, 2048])
@pytest.mark.parametrize("impl", ["fidkit-streaming-b50", "fidkit-streaming-b500", "numpy-cov"])
def test_bench_stats(benchmark, impl: str, d: int) -> None:
    x = _features(d)
    if impl == "numpy-cov":
        fn, args = _numpy, (x,)
    else:
        fn, args = _streaming, (x, int(impl.rpartition("-b")[2]))
    benchmark.group = f"stats N={N} d={d}"
    out = benchmark.pedantic(fn, args=args, rounds=3, iterations=1, warmup_rounds=0)
    s = _streaming(x)
    mean, cov = out if impl == "numpy-cov" else (out.mean, out.cov)
    np.testing.assert_allclose(cov, s.cov, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mean, s.mean, rtol=1e-12)
