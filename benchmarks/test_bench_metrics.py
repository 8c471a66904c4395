"""Metric math against peers in the same run: FID at d=2048 vs pytorch-fid's sqrtm formula, PR/DC vs prdc.

Run: ``pytest benchmarks/test_bench_metrics.py --benchmark-columns=min,mean,rounds``. On a shared
machine wall time is mostly other people's load; compare CPU time instead:
``OPENBLAS_NUM_THREADS=1 pytest benchmarks/test_bench_metrics.py --benchmark-timer=time.process_time``.

- ``frechet``: pytorch-fid's ``calculate_frechet_distance`` (``scipy.linalg.sqrtm`` of S1 S2) against
  fidkit's ``frechet_distance`` (both covariances factored per call) and ``FrechetReference.distance``
  (reference factored once, outside the timing: the FID-every-epoch case). Same random full-rank
  covariances; the values are checked to agree.
- ``prdc``: ``prdc.compute_prdc`` (full N×N distance matrices) against fidkit's blockwise ``prdc`` on
  the same N=10,000 features; the four numbers are checked to be equal. d=64 keeps the run short; the
  distance work scales linearly in d for both.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from fidkit.frechet import FrechetReference, frechet_distance
from fidkit.prdc import prdc

FID_DIM = 2048
PRDC_N, PRDC_DIM = 10_000, 64


def _gaussians(d: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((d, d + 200)) / np.sqrt(d)
    b = rng.standard_normal((d, d + 200)) / np.sqrt(d)
    return rng.standard_normal(d) * 0.1, a @ a.T, rng.standard_normal(d) * 0.1, b @ b.T


@pytest.mark.parametrize("impl", ["pytorch-fid-sqrtm", "fidkit", "fidkit-cached-reference"])
def test_bench_frechet(benchmark, impl: str) -> None:
    mu1, s1, mu2, s2 = _gaussians(FID_DIM)
    benchmark.group = f"frechet d={FID_DIM}"
    if impl == "pytorch-fid-sqrtm":
        from pytorch_fid.fid_score import calculate_frechet_distance

        fn, args, rounds = calculate_frechet_distance, (mu1, s1, mu2, s2), 1
    elif impl == "fidkit":
        fn, args, rounds = frechet_distance, (mu1, s1, mu2, s2), 3
    else:
        ref = FrechetReference(mu1, s1)
        fn, args, rounds = ref.distance, (mu2, s2), 3
    value = benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=0)
    assert value == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-8)


def _compute_prdc(real: np.ndarray, fake: np.ndarray) -> dict:
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the sample counts
        return compute_prdc(real, fake, nearest_k=5)


@pytest.mark.parametrize("impl", ["prdc-package", "fidkit-blockwise"])
def test_bench_prdc(benchmark, impl: str) -> None:
    rng = np.random.default_rng(1)
    real = rng.standard_normal((PRDC_N, PRDC_DIM))
    fake = rng.standard_normal((PRDC_N, PRDC_DIM)) * 1.1 + 0.05
    benchmark.group = f"precision/recall/density/coverage N={PRDC_N} d={PRDC_DIM} k=5"
    fn = _compute_prdc if impl == "prdc-package" else (lambda r, f: prdc(r, f, 5)._asdict())
    out = benchmark.pedantic(fn, args=(real, fake), rounds=1, iterations=1, warmup_rounds=0)
    if impl == "fidkit-blockwise":
        peer = _compute_prdc(real, fake)
        assert out == {k: float(v) for k, v in peer.items()}
