"""1 vs 2 gloo processes on the CPU: ``torchrun -m fidkit stats`` on the same images, same run.

Run: ``pytest benchmarks/test_bench_distributed.py --benchmark-columns=min,mean,rounds``.

Each round is one whole command, start-up included (Python, torch and fidkit imports, the gloo
rendezvous), on the MNIST test set tiled to 30,000 images (.npy) with the ``mnist`` extractor:

- ``torchrun-1``: ``torchrun --nproc-per-node 1`` (one process, OMP_NUM_THREADS=1);
- ``torchrun-2``: ``torchrun --nproc-per-node 2`` (two processes, one thread each: the 2 cores here);
- ``plain-2-threads``: ``python -m fidkit`` with torch's 2 intra-op threads (what one process gets
  from both cores without torchrun);
- ``*-startup``: the same commands on 64 images, the fixed cost to subtract.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from fidkit.mnist_data import load_mnist

pytest.importorskip("torch")

N = 30_000
#: Under ``--benchmark-disable`` (CI runs every benchmark once, only so that none rots): the "full" size.
N_SMOKE = 1_000


@pytest.fixture(scope="module")
def n_full(request) -> int:
    return N_SMOKE if request.config.getoption("benchmark_disable", False) else N


@pytest.fixture(scope="module")
def images(tmp_path_factory, n_full: int) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bench-dist")
    x = load_mnist()[0]
    paths = {}
    for name, n in (("full", n_full), ("startup", 64)):
        arr = np.concatenate([x] * (-(-n // len(x))))[:n]
        paths[name] = str(root / f"{name}.npy")
        np.save(paths[name], arr)
    return paths


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(config: str, path: str, out: str) -> tuple[list[str], dict[str, str]]:
    fidkit = ["-m", "fidkit", "stats", path, "-o", out, "--no-progress", "--batch-size", "500"]
    if config == "plain-2-threads":
        return [sys.executable, *fidkit], {**os.environ, "OMP_NUM_THREADS": "2"}
    nproc = config.split("-")[1]
    return ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", nproc, "--master-addr",
             "127.0.0.1", "--master-port", str(_port()), *fidkit], {**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("size", ["full", "startup"])
@pytest.mark.parametrize("config", ["torchrun-1", "torchrun-2", "plain-2-threads"])
def test_bench_distributed_stats(benchmark, images, n_full: int, tmp_path, config: str, size: str) -> None:
    out = str(tmp_path / "s.npz")

    def run() -> None:
        cmd, env = _command(config, images[size], out)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]

    benchmark.pedantic(run, rounds=3, iterations=1)
    with np.load(out) as z:
        assert int(z["n"]) == (n_full if size == "full" else 64)
