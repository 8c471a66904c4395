"""Bounded memory at scale: every metric on 200,000 x 2048 memory-mapped float32 features, peak RSS < 4 GB.

Run: ``pytest benchmarks/test_bench_memory.py --benchmark-columns=min,rounds``. The sizes are N = 200,000
rows per side of d = 2048 features (1.6 GB per side on disk) and 1008 logits for IS (0.8 GB); ``FIDKIT_BENCH_MEMORY_N``
sets N. Under ``--benchmark-disable`` (CI: every benchmark once, only so that none rots) N is `N_SMOKE` and
d `D_SMOKE`. PR/DC compares every real row with every fake row (about 3 N² d flops: 3 hours at N = 200,000
on this file's 2-core reference machine), so it runs at ``FIDKIT_BENCH_MEMORY_PRDC_N`` (default `N_PRDC`)
rows per side of the same files (the first rows); its memory is O(tile + N), not O(N²).

Each case runs in a fresh subprocess started by a small launcher that reads the child's peak resident set
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, as ``test_bench_cmmd.py`` does; cross-checked with
the child's ``VmHWM``). RSS counts the pages of a memory map the process has touched; fidkit's block
readers drop them after each block (`fidkit.featurestore.release`), so it measures fidkit's own memory.

- the features are generated block by block and written to ``.npy`` files (never whole in memory), once
  per session, in pytest's temporary folder (check its free space: about 4 GB at N = 200,000);
- ``inputs-only``: opening the files and importing fidkit (the floor);
- ``fid-stats``: `fidkit.StatsAccumulator` fed in blocks (`fidkit.featurestore.blocks`) for both sides,
  then the FID: O(d²) memory whatever N;
- ``kid``: `fidkit.kid` with its defaults (100 subsets of 1000 rows read from the map);
- ``is``: `fidkit.inception_score` on the logits (one split in memory at a time);
- ``prdc``: `fidkit.prdc` (precision/recall at k = 3, density/coverage at k = 5) at the PR/DC size;
- ``store-all``: the path of `fidkit.compute_features`: rows appended batch by batch to `FeatureStore`\\ s
  with the default bound (1 GiB, so both sides and the logits spill to disk), then FID stats, KID and IS.

``extra_info``: peak RSS and ``VmHWM`` (MB), wall and CPU seconds of the computation, and its values.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

N_FULL = int(os.environ.get("FIDKIT_BENCH_MEMORY_N", "200000"))
N_PRDC = int(os.environ.get("FIDKIT_BENCH_MEMORY_PRDC_N", "20000"))
D, K = 2048, 1008
#: Under ``--benchmark-disable``: rows per side and feature width (seconds in all).
N_SMOKE, D_SMOKE, K_SMOKE = 3000, 64, 16
#: The bound the issue sets for every metric at N = 200,000.
RSS_LIMIT_MB = 4096
#: Rows generated per block (64 MB of float32 at d = 2048).
GEN_ROWS = 8192

# Runs in a fresh interpreter: argv = case, folder, n, d, k, n_prdc, path of this folder.
_CHILD = r"""
import json, sys, time
case, folder, n, d, k, n_prdc = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
sys.path.insert(0, sys.argv[7])
import numpy as np
import fidkit
from fidkit import featurestore
import test_bench_memory as bench

open_ = lambda name: np.load(f"{folder}/{name}.npy", mmap_mode="r")
real, fake, logits = open_("real"), open_("fake"), open_("logits")
t0, c0 = time.perf_counter(), time.process_time()
values = {}

def fid(a, b):
    sa, sb = bench.streamed_stats(a), bench.streamed_stats(b)
    return fidkit.frechet_distance(sa.mean, sa.cov, sb.mean, sb.cov)

if case == "fid-stats":
    values["fid"] = fid(real, fake)
elif case == "kid":
    values["kid"] = fidkit.kid(real, fake)
elif case == "is":
    values["is"] = fidkit.inception_score(logits)
elif case == "prdc":
    values["prdc"] = fidkit.prdc(real[:n_prdc], fake[:n_prdc])._asdict()
elif case == "store-all":
    stores = [bench.generate_into(featurestore.FeatureStore(label=name), name, n, d, k)
              for name in ("real", "fake", "logits")]
    values["spilled"] = [s.spilled for s in stores]
    real, fake, logits = (s.finalize() for s in stores)
    values["fid"] = fid(real, fake)
    values["kid"] = fidkit.kid(real, fake)
    values["is"] = fidkit.inception_score(logits)
seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
with open("/proc/self/status") as f:  # VmHWM: this process image's own peak, a cross-check
    hwm = next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")), None)
print(json.dumps({"vm_hwm_mb": hwm, "seconds": seconds, "cpu_seconds": cpu_seconds, "values": values}))
"""

# Starts the child and reads its ru_maxrss (a child started straight from pytest would inherit pytest's
# peak across fork and exec; see test_bench_cmmd.py).
_LAUNCHER = r"""
import json, resource, subprocess, sys
out = subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], check=True, capture_output=True,
                     text=True)
report = json.loads(out.stdout)
report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(report))
"""


def _block(name: str, lo: int, hi: int, d: int, k: int) -> np.ndarray:
    """Rows lo:hi of input ``name``, the same whoever asks: real N(0, 1), fake N(0.1, 1.1²), logits 3 N(0, 1)."""
    seed = {"real": 0, "fake": 1, "logits": 2}[name]
    rng = np.random.default_rng([seed, lo])
    width = k if name == "logits" else d
    x = rng.standard_normal((hi - lo, width), dtype=np.float32)
    if name == "fake":
        x *= np.float32(1.1)
        x += np.float32(0.1)
    elif name == "logits":
        x *= np.float32(3.0)
    return x


def generate_into(store, name: str, n: int, d: int, k: int):
    """Appends the ``n`` rows of input ``name`` to ``store`` (anything with ``append``), `GEN_ROWS` at a time."""
    for lo in range(0, n, GEN_ROWS):
        store.append(_block(name, lo, min(lo + GEN_ROWS, n), d, k))
    return store


class _NpyWriter:
    """Writes rows to a .npy file as they come (header first, then raw rows): never all in memory."""

    def __init__(self, path: str, n: int, width: int) -> None:
        self.f = open(path, "wb")  # noqa: SIM115
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (n, width)}
        np.lib.format.write_array_header_1_0(self.f, header)

    def append(self, rows: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(rows, dtype=np.float32).data)


def streamed_stats(x: np.ndarray):
    """Returns `fidkit.Stats` of ``x`` fed block by block to `fidkit.StatsAccumulator` (as `compute_stats`)."""
    from fidkit import StatsAccumulator, featurestore

    acc = StatsAccumulator()
    for _, block in featurestore.blocks(x, StatsAccumulator.FLUSH_ROWS * 4):
        acc.update(block)
    return acc.stats()


def _sizes(disabled: bool) -> tuple[int, int, int, int]:
    if disabled:
        return N_SMOKE, D_SMOKE, K_SMOKE, N_SMOKE
    return N_FULL, D, K, min(N_PRDC, N_FULL)


@pytest.fixture(scope="module")
def feature_files(tmp_path_factory, request) -> dict:
    """Writes real, fake (N, d) and logits (N, k) float32 .npy files block by block, once per module."""
    disabled = request.config.getoption("benchmark_disable", False)
    n, d, k, n_prdc = _sizes(disabled)
    folder = tmp_path_factory.mktemp("memory")
    need = n * (2 * d + k) * 4
    free = shutil.disk_usage(folder).free
    if free < 1.5 * need:
        pytest.skip(f"{folder}: {free / 2**30:.1f} GiB free, the features need {need / 2**30:.1f} GiB; set "
                    f"--basetemp to a larger disk or FIDKIT_BENCH_MEMORY_N lower")
    for name in ("real", "fake", "logits"):
        w = _NpyWriter(str(folder / f"{name}.npy"), n, k if name == "logits" else d)
        generate_into(w, name, n, d, k)
        w.f.close()
    yield {"folder": str(folder), "n": n, "d": d, "k": k, "n_prdc": n_prdc}
    shutil.rmtree(folder, ignore_errors=True)


_SEEN: dict[str, object] = {}  # values of the file cases, which store-all must repeat exactly
_CASES = ["inputs-only", "fid-stats", "kid", "is", "prdc", "store-all"]


@pytest.mark.parametrize("case", _CASES)
def test_bench_memory_peak_rss(benchmark, feature_files: dict, case: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    f = feature_files
    args = [case, f["folder"], str(f["n"]), str(f["d"]), str(f["k"]), str(f["n_prdc"]), here]
    env = {**os.environ}
    env.pop(__import__("fidkit.featurestore").featurestore.MAX_BYTES_ENV, None)  # the default bound

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", _LAUNCHER, _CHILD, *args], check=True,
                             capture_output=True, text=True, env=env)
        return json.loads(out.stdout)

    n = f["n_prdc"] if case == "prdc" else f["n"]
    benchmark.group = f"memory: peak RSS, subprocess, N={n} d={f['d']}"
    report = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(report)
    assert report["peak_rss_mb"] < RSS_LIMIT_MB, report
    values = report["values"]
    if case == "store-all":  # the default bound spills the features (not the smoke run's small logits)
        assert values["spilled"][:2] == [f["n"] * f["d"] * 4 > 2**30] * 2
        for key in ("fid", "kid", "is"):  # the same rows through the store: the same numbers, exactly
            if key in _SEEN:
                assert values[key] == _SEEN[key], key
    _SEEN.update(values)
    if case in ("fid-stats", "store-all"):
        assert values["fid"] > 0
    if case == "kid":
        assert values["kid"][0] > 0
    if case == "is":
        assert values["is"][0] > 1
    if case == "prdc":
        assert 0 <= values["prdc"]["precision"] <= 1
