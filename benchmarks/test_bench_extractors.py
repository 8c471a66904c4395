"""Inception (tf2015) throughput, images/s: fidkit on torch, tf and jax beside pytorch-fid and torch-fidelity.

Same synthetic weights (`fidkit.archs.synthetic`, saved under each peer's own hub file name in a private
TORCH_HOME), same images, same run. Two groups:

* ``network``: a batch already at 299 x 299 (no resize), features out;
* ``pipeline64``: 4 batches of uint8 images at 64 x 64 through resize, network and the mean/covariance
  statistics (fidkit: `fidkit.pipeline.compute_stats`; peers: their forward with built-in resize batch by
  batch, then numpy mean and covariance, as their FID code does). Four batches, so that per-run fixed
  costs (threads, the d x d covariance) weigh as they do in a real run, not as for one batch.

Run: ``pytest benchmarks/test_bench_extractors.py --benchmark-columns=mean,rounds --benchmark-group-by=group``;
each benchmark's ``extra_info`` holds images/s. Runtimes and peers that are not installed are skipped.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401  (before tensorflow, always)
    import torchvision  # noqa: F401  (imports torch._dynamo, which segfaults after tensorflow)

from fidkit.archs.inception import inception_tf2015
from fidkit.archs.synthetic import synthetic_images, write_synthetic_weights
from fidkit.errors import FidkitWarning
from fidkit.extraction import Extractor, extractor
from fidkit.registry import RUNTIME_MODULES
from fidkit.weights import load_canonical

BATCH = 8
IMAGES_299 = synthetic_images(BATCH, (299, 299), seed=21)
PIPELINE_BATCHES = 4
IMAGES_64 = synthetic_images(PIPELINE_BATCHES * BATCH, (64, 64), seed=22)
PEER_FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_weights(inception_tf2015(logits_bias=True),
                                   tmp_path_factory.mktemp("bench") / "tf2015.npz")


@pytest.fixture(scope="module")
def torch_home(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    state = {k: torch.from_numpy(v) for k, v in load_canonical(weights).items()}
    for name in PEER_FILES:
        torch.save(state, home / "hub" / "checkpoints" / name)
    return home


def _fidkit(runtime: str, weights: Path, policy: str) -> Extractor:
    if importlib.util.find_spec(RUNTIME_MODULES[runtime]) is None:
        pytest.skip(f"{runtime} not installed")
    with pytest.warns(FidkitWarning):
        return extractor("inception-tf2015", runtime, weights=str(weights), policy=policy)


def _run(benchmark, fn: Callable[[], object], group: str, label: str) -> None:
    fn()  # build, trace, compile: not part of the steady state
    benchmark.group = group
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=0)
    benchmark.extra_info["impl"] = label
    if benchmark.stats is not None:  # None under --benchmark-disable
        n = BATCH if group == "network" else len(IMAGES_64)
        benchmark.extra_info["images_per_s"] = round(n / benchmark.stats.stats.mean, 2)


def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


@pytest.mark.parametrize("runtime", ["torch", "tf", "jax"])
def test_bench_fidkit_network(benchmark, weights: Path, runtime: str) -> None:
    ex = _fidkit(runtime, weights, "legacy-tensorflow")
    x = IMAGES_299.astype(np.float32)
    _run(benchmark, lambda: ex.features(x), "network", f"fidkit {runtime}")


@pytest.mark.parametrize("runtime", ["torch", "tf", "jax"])
def test_bench_fidkit_pipeline64(benchmark, weights: Path, runtime: str) -> None:
    from fidkit.pipeline import compute_stats

    ex = _fidkit(runtime, weights, "legacy-tensorflow")
    _run(benchmark, lambda: compute_stats(IMAGES_64, ex, batch_size=BATCH, progress=False),
         "pipeline64", f"fidkit {runtime}")


def _pytorch_fid(torch_home: Path):
    pytest.importorskip("pytorch_fid")
    from pytorch_fid.inception import InceptionV3

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(torch_home))
        return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()


def _torch_fidelity(torch_home: Path):
    pytest.importorskip("torch_fidelity")
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(torch_home))
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], verbose=False)


@pytest.mark.peers
@pytest.mark.parametrize("group", ["network", "pipeline64"])
def test_bench_pytorch_fid(benchmark, torch_home: Path, group: str) -> None:
    import torch

    model = _pytorch_fid(torch_home)
    images = IMAGES_299 if group == "network" else IMAGES_64

    def run() -> object:
        feats = []
        for i in range(0, len(images), BATCH):
            x = torch.from_numpy(images[i:i + BATCH]).permute(0, 3, 1, 2).float() / 255.0
            with torch.no_grad():
                feats.append(model(x)[0][:, :, 0, 0].numpy())
        return feats[0] if group == "network" else _stats(np.concatenate(feats))

    _run(benchmark, run, group, "pytorch-fid")


@pytest.mark.peers
@pytest.mark.parametrize("group", ["network", "pipeline64"])
def test_bench_torch_fidelity(benchmark, torch_home: Path, group: str) -> None:
    import torch

    model = _torch_fidelity(torch_home)
    images = IMAGES_299 if group == "network" else IMAGES_64

    def run() -> object:
        feats = []
        for i in range(0, len(images), BATCH):
            x = torch.from_numpy(images[i:i + BATCH]).permute(0, 3, 1, 2).contiguous()
            with torch.no_grad():
                feats.append(model(x)[0].numpy())
        return feats[0] if group == "network" else _stats(np.concatenate(feats))

    _run(benchmark, run, group, "torch-fidelity")
