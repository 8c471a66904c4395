"""The shipped reference statistics: provenance of this extractor, and reproduced from the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime, tolerance

from fidkit.frechet import frechet_distance
from fidkit.mnist_data import load_mnist, to_rgb
from fidkit.extraction import extractor
from fidkit.stats import Stats, StatsAccumulator, check_compatible, load

REPO = Path(__file__).resolve().parent.parent
REF = REPO / "reference_stats"
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def _recompute(runtime: str, images: np.ndarray) -> Stats:
    from fidkit.stats import Provenance

    ex = extractor("mnist", runtime=runtime)
    acc = StatsAccumulator(Provenance.from_extractor(ex))
    for i in range(0, len(images), 1000):
        acc.update(ex.features(to_rgb(images[i:i + 1000])))
    return acc.stats()


def _assert_same(shipped: Stats, got: Stats) -> None:
    assert got.n == shipped.n
    scale = float(np.sqrt(np.diag(shipped.cov)).mean())
    tol = tolerance("stats", "mnist_reference")
    assert np.abs(got.mean - shipped.mean).max() <= tol * scale
    assert np.abs(got.cov - shipped.cov).max() <= tol * scale ** 2
    check_compatible(shipped, got)  # same extractor, weights, policy, input size; runtime may differ
    assert frechet_distance(shipped.mean, shipped.cov, got.mean, got.cov) <= 1e-6 * np.trace(shipped.cov)


@pytest.mark.parametrize("split", ["train", "test"])
def test_shipped_provenance(split: str) -> None:
    s = load(REF / f"mnist-{split}.npz")
    ex = extractor("mnist", runtime="numpy")
    p = s.provenance
    assert (p.extractor, p.weights_sha256, p.resize_policy, p.input_size) == (
        "mnist", ex.weights_sha256, "mnist", "28x28")
    assert s.n == {"train": 60000, "test": 10000}[split]
    assert s.dim == ex.feature_dim
    assert np.allclose(s.cov, s.cov.T, rtol=0, atol=0)
    assert np.linalg.eigvalsh(s.cov).min() > 0
    assert "MNIST" in p.description


@pytest.mark.slow
def test_test_stats_reproduced() -> None:
    """The default runtime reproduces the shipped test statistics.

    The other runtimes agree with it feature by feature (tests/test_mnist.py), so one suffices here.
    """
    from fidkit.registry import choose_runtime, get_spec

    images, _ = load_mnist("test")
    _assert_same(load(REF / "mnist-test.npz"), _recompute(choose_runtime(get_spec("mnist"), None), images))


@pytest.mark.slow
def test_train_stats_reproduced() -> None:
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"{SHARED_MNIST} not present")
    require_runtime("torch")
    images, _ = load_mnist("train", SHARED_MNIST)
    _assert_same(load(REF / "mnist-train.npz"), _recompute("torch", images))


def test_readme_is_generated_from_the_shipped_files() -> None:
    """README.md is exactly what the script writes from the shipped statistics and noise_floor.json."""
    import importlib.util
    import json
    import re

    spec = importlib.util.spec_from_file_location("fidkit_make_reference_stats",
                                                  REPO / "scripts" / "make_reference_stats.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (REF / "README.md").read_text()
    command = re.search(r"Written by `([^`]+)`", text).group(1)
    stats = {split: load(REF / f"mnist-{split}.npz") for split in ("train", "test")}
    floor = json.loads((REF / "noise_floor.json").read_text())
    assert mod.readme(stats, floor, command) == text
    assert len(floor["fid"]) == 6 and all(v > 0 for v in floor["fid"])
    assert all(0 < v <= 1 for key in ("precision", "recall", "coverage") for v in floor[key])
    assert 1 <= floor["is_test"][0] <= 10
