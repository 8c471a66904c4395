"""The scoring step alone (no extraction): fid + kid + is + pr + dc with 100 bootstrap resamples on
10,000 x 128 MNIST-like features, with the machine to itself and with one competing CPU-bound process,
for this tree and for an earlier commit (issue 13: ~3 silent minutes after the progress bars ended).

Each run is a fresh subprocess (``PYTHONPATH`` is this tree, or ``git archive`` of
``FIDKIT_BENCH_SCORING_BEFORE``, e.g. ``994a18f``, the commit before the thread limits) that draws the
features, calls ``fidkit.score(real, fake, bootstrap=100)`` and reports wall-clock and CPU seconds; the
competitor is ``python -c "while True: pass"``, started before and killed after. Features: Gaussian
with the mean and covariance of the shipped MNIST test statistics (fake: scaled 1.2 and shifted 0.5);
logits random. ``FIDKIT_BENCH_SCORING_N`` sets the sample size (default 10,000; 1,000 under
``--benchmark-disable``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BEFORE = os.environ.get("FIDKIT_BENCH_SCORING_BEFORE")

_SCRIPT = r"""
import json, sys, time
import numpy as np
import fidkit
from fidkit.features import FeatureResult
from fidkit.stats import Provenance, load
n = int(sys.argv[1])
ref = load(sys.argv[2])
rng = np.random.default_rng(0)
chol = np.linalg.cholesky(ref.cov + 1e-9 * np.eye(ref.dim))
prov = Provenance(extractor="bench", weights_sha256="0" * 64, resize_policy="none", input_size="28x28")
real = FeatureResult(ref.mean + rng.standard_normal((n, ref.dim)) @ chol.T, rng.standard_normal((n, 10)) * 4,
                     [], prov)
fake = FeatureResult(ref.mean + 0.5 + 1.2 * (rng.standard_normal((n, ref.dim)) @ chol.T),
                     rng.standard_normal((n, 10)) * 3, [], prov)
wall, cpu = time.perf_counter(), time.process_time()
out = fidkit.score(real, fake, bootstrap=100)
print(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                  "fid": out["fid"], "module": fidkit.__file__}))
"""


def _tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Returns the folder to put on PYTHONPATH: this tree, or the fidkit package at ``BEFORE``."""
    if not BEFORE:
        return REPO
    out = tmp_path_factory.mktemp(f"fidkit-{BEFORE}")
    data = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE, "fidkit"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(out, filter="data")
    return out


@pytest.mark.parametrize("competitor", [False, True], ids=["alone", "one-competing-process"])
def test_scoring_step(benchmark, tmp_path_factory, competitor: bool) -> None:
    disabled = benchmark.disabled
    n = int(os.environ.get("FIDKIT_BENCH_SCORING_N", 1000 if disabled else 10_000))
    env = {**os.environ, "PYTHONPATH": str(_tree(tmp_path_factory))}
    cmd = [sys.executable, "-c", _SCRIPT, str(n), str(REPO / "reference_stats" / "mnist-test.npz")]
    result: dict = {}

    def run() -> None:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competitor else None
        try:
            # cwd: `python -c` puts the current folder first on sys.path, ahead of PYTHONPATH
            done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True,
                                  cwd=tmp_path_factory.getbasetemp())
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        result.update(json.loads(done.stdout.strip().splitlines()[-1]))

    benchmark.group = "scoring step"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({"n": n, "tree": BEFORE or "working tree", **result})
    print(f"\nscoring n={n} tree={BEFORE or 'working tree'} competitor={competitor}: "
          f"wall {result['wall_s']:.1f} s, cpu {result['cpu_s']:.1f} s ({result['module']})")
    assert result["fid"] > 0
