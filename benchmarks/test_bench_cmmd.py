"""CMMD: fidkit's tiled float64 sums against the direct computation from three full N×N kernel matrices.

Run: ``pytest benchmarks/test_bench_cmmd.py --benchmark-columns=min,mean,rounds``; the N = 30,000 case
(the paper's COCO-30k size, ~90 s of BLAS on 2 cores) only with ``FIDKIT_BENCH_CMMD_30K=1``. Under
``--benchmark-disable`` (CI) the N = 5,000 cases run at N = 500.

- ``time``: at N = 5,000 per side, d = 768 (CLIP ViT-L/14's projection width), unit-norm synthetic
  float32 embeddings: ``direct-nxn-float64`` (the authors' formula in numpy, float64: three N×N
  matrices, 600 MB), ``fidkit`` (tiles of 1024², the triangle of k_xx and k_yy only) and, last in the
  session, their formula jitted in JAX at float32 as they run it (``..._authors_jax``; skipped without
  jax). Values are checked to agree.
- ``peak_rss``: each computation in a fresh subprocess that generates the float32 embeddings and
  computes; its peak RSS is ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` read by a small launcher
  process (see ``_LAUNCHER`` for why not straight from pytest), cross-checked with the child's own
  ``VmHWM``. ``inputs-only`` is the same process without the computation, so the difference is the
  metric's own working memory. ``extra_info`` holds peak RSS (MB), the computation's wall and CPU seconds and its value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fidkit.cmmd import cmmd

D = 768
N_TIME = 5_000
#: Under ``--benchmark-disable`` (CI: every benchmark once, only so that none rots) N = 5,000 becomes this.
N_SMOKE = 500
N_LARGE = 30_000
LARGE = os.environ.get("FIDKIT_BENCH_CMMD_30K") == "1"

# Runs in a fresh interpreter: argv = impl, n. Embeddings are float32, as extractors return them.
_CHILD = r"""
import json, resource, sys, time
import numpy as np

impl, n = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
import test_bench_cmmd as bench  # the same imports (fidkit, pytest) in every case, baseline included

x, y = bench.embeddings(n, 0, 0.0), bench.embeddings(n, 1, 0.3)
t0, c0 = time.perf_counter(), time.process_time()
if impl == "fidkit":
    value = bench.cmmd(x, y)
elif impl == "direct-nxn-float64":
    value = bench.direct_nxn(x, y)
else:
    value = None
seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
with open("/proc/self/status") as f:  # VmHWM: this process image's own peak, a cross-check
    hwm = next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")), None)
print(json.dumps({"vm_hwm_mb": hwm, "seconds": seconds, "cpu_seconds": cpu_seconds, "value": value}))
"""

# Starts the child and reads its ru_maxrss. Linux carries ru_maxrss across fork and exec from the process
# that spawned it, so a child spawned straight from pytest (1.4 GB after the timing benchmarks) reports
# pytest's peak; spawned from this small launcher, it reports its own (floor: the launcher's ~10 MB).
_LAUNCHER = r"""
import json, resource, subprocess, sys
out = subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], check=True, capture_output=True,
                     text=True)
report = json.loads(out.stdout)
report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(report))
"""


def embeddings(n: int, seed: int, shift: float) -> np.ndarray:
    """Unit-norm float32 rows around a common direction (pairwise cosines ~0.5, as CLIP embeddings)."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, D), dtype=np.float32) / np.float32(D ** 0.5)
    e[:, 0] += 1.0
    e[:, 1] += shift
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e


def direct_nxn(x: np.ndarray, y: np.ndarray) -> float:
    """The authors' formula in numpy at float64: three full kernel matrices (what the ports do)."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    gamma = 1.0 / (2 * 10.0**2)

    def mean_kernel(a, b):
        a_sq, b_sq = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
        return np.exp(-gamma * (-2 * (a @ b.T) + a_sq[:, None] + b_sq[None, :])).mean()

    return float(1000 * (mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y)))


def _authors_jax():
    import jax
    import jax.numpy as jnp

    @jax.jit
    def mmd(x, y):
        gamma = 1 / (2 * 10**2)

        def mean_kernel(a, b):
            a_sq, b_sq = jnp.diag(a @ a.T), jnp.diag(b @ b.T)
            return jnp.mean(jnp.exp(-gamma * (-2 * (a @ b.T) + a_sq[:, None] + b_sq[None, :])))

        return 1000 * (mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y))

    return lambda x, y: float(mmd(jnp.asarray(x), jnp.asarray(y)))


@pytest.mark.parametrize("impl", ["direct-nxn-float64", "fidkit"])
def test_bench_cmmd_time(benchmark, impl: str) -> None:
    n = N_SMOKE if benchmark.disabled else N_TIME
    x, y = embeddings(n, 0, 0.0), embeddings(n, 1, 0.3)
    benchmark.group = f"CMMD N={n} d={D}"
    fn = cmmd if impl == "fidkit" else direct_nxn
    value = benchmark.pedantic(fn, args=(x, y), rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info["cmmd"] = value
    assert value == pytest.approx(direct_nxn(x, y) if impl == "fidkit" else cmmd(x, y), rel=1e-9)


@pytest.mark.parametrize("runtime", ["jax"])  # the name conftest sorts by: jax's benchmarks run last
def test_bench_cmmd_time_authors_jax(benchmark, runtime: str) -> None:
    pytest.importorskip(runtime)
    n = N_SMOKE if benchmark.disabled else N_TIME
    x, y = embeddings(n, 0, 0.0), embeddings(n, 1, 0.3)
    benchmark.group = f"CMMD N={n} d={D}"
    fn = _authors_jax()
    fn(x, y)  # compile for these shapes outside the timing
    value = benchmark.pedantic(fn, args=(x, y), rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info["cmmd"] = value
    # float32 sums of 2.5e7 kernel values near 1; the budget of tests/test_cmmd.py's FLOAT32_ATOL, doubled
    assert abs(value - cmmd(x, y)) < 2e-3


_RSS_CASES = [("inputs-only", N_TIME), ("direct-nxn-float64", N_TIME), ("fidkit", N_TIME)]
_RSS_CASES += [pytest.param("inputs-only", N_LARGE, marks=pytest.mark.skipif(not LARGE, reason="FIDKIT_BENCH_CMMD_30K=1")),
               pytest.param("fidkit", N_LARGE, marks=pytest.mark.skipif(not LARGE, reason="FIDKIT_BENCH_CMMD_30K=1"))]


@pytest.mark.parametrize(("impl", "n"), _RSS_CASES)
def test_bench_cmmd_peak_rss(benchmark, impl: str, n: int) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if benchmark.disabled and n == N_TIME:
        n = N_SMOKE

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", _LAUNCHER, _CHILD, impl, str(n), here], check=True,
                             capture_output=True, text=True)
        return json.loads(out.stdout)

    benchmark.group = f"CMMD peak RSS, subprocess, N={n} d={D}"
    report = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(report)
    if impl != "inputs-only":
        assert report["value"] > 0
