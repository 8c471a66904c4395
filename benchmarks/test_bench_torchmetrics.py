"""torchmetrics' own ``FrechetInceptionDistance`` beside fidkit's (`fidkit.integrations.torchmetrics`), same run.

Run: ``pytest benchmarks/test_bench_torchmetrics.py --benchmark-columns=min,mean,rounds --benchmark-group-by=group``.
Under ``--benchmark-disable`` (CI: each case once, only so that none rots) the sizes shrink to seconds.

- ``update``: images/s of ``update`` on the Inception network (2015 TensorFlow graph) with the same
  synthetic weights on both sides (`fidkit.archs.synthetic`, saved under torch-fidelity's hub file names
  in a private ``TORCH_HOME`` for torchmetrics, as ``test_bench_extractors.py`` does): `BATCHES` batches
  of `BATCH` uint8 images at 64 x 64, real and generated, resized to 299 by each library's own resize.
  torchmetrics adds float64 Σx and Σxxᵀ per batch (``feature=2048``); fidkit Chan's float64 moments.
- ``compute``: ``compute()`` alone at d = 2048 (`D`), the features injected by a small torch module (the
  same module as torchmetrics' ``feature=`` and, through `fidkit.from_torch`, as fidkit's extractor), so
  the network's cost is out of the figure: `N_COMPUTE` real and generated rows (more rows than dimensions,
  so both covariances are full rank). torchmetrics takes the eigenvalues of the non-symmetric product
  Σ₁Σ₂ (``torch.linalg.eigvals``); fidkit a symmetric route (`fidkit.frechet_distance`). Both are checked
  against `fidkit.frechet_distance` of `fidkit.StatsAccumulator` statistics of the same features;
  ``extra_info`` holds each side's relative error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchmetrics")
pytest.importorskip("torch_fidelity")

import fidkit  # noqa: E402
from fidkit.archs.inception import inception_tf2015  # noqa: E402
from fidkit.archs.synthetic import write_synthetic_weights  # noqa: E402
from fidkit.weights import load_canonical  # noqa: E402

BATCH = 8
BATCHES = 2
D = 2048
N_COMPUTE = 4000
#: Under ``--benchmark-disable``: feature width and rows for the compute case.
D_SMOKE, N_SMOKE = 128, 400
#: Under ``--benchmark-disable``: images per update batch (one batch per side).
BATCH_SMOKE = 2
PEER_FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_weights(inception_tf2015(logits_bias=True),
                                   tmp_path_factory.mktemp("bench") / "tf2015.npz")


@pytest.fixture(scope="module")
def torch_home(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    state = {k: torch.from_numpy(v) for k, v in load_canonical(weights).items()}
    for name in PEER_FILES:
        torch.save(state, home / "hub" / "checkpoints" / name)
    return home


def _images(seed: int, batch: int, batches: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (batch, 3, 64, 64), dtype=torch.uint8, generator=g) for _ in range(batches)]


def _fidkit_fid(extractor):
    from fidkit.integrations.torchmetrics import FrechetInceptionDistance

    return FrechetInceptionDistance(extractor)


@pytest.mark.parametrize("impl", ["torchmetrics", "fidkit"])
def test_bench_update(benchmark, impl: str, weights: Path, torch_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    batch, batches = (BATCH_SMOKE, 1) if benchmark.disabled else (BATCH, BATCHES)
    real, fake = _images(0, batch, batches), _images(1, batch, batches)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic weights: fidkit says so, once per build
        if impl == "torchmetrics":
            from torchmetrics.image.fid import FrechetInceptionDistance

            metric = FrechetInceptionDistance(feature=2048)
        else:
            ex = fidkit.extractor("inception-tf2015", "torch", weights=str(weights))
            metric = _fidkit_fid(ex)

    def run() -> None:
        metric.reset()
        for r, f in zip(real, fake, strict=True):
            metric.update(r, real=True)
            metric.update(f, real=False)

    if not benchmark.disabled:
        run()  # build and warm up outside the timing
    benchmark.group = f"torchmetrics FID vs fidkit: update, {2 * batch * batches} images 64x64 -> 299"
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info["impl"] = impl
    if benchmark.stats is not None:
        benchmark.extra_info["images_per_s"] = round(2 * batch * batches / benchmark.stats.stats.mean, 2)


class _Features(torch.nn.Module):
    """Pixels -> ``d`` features: 8 x 8 grey pooling, then a fixed random 2-layer tanh network (full rank)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.hidden = torch.nn.Linear(64, 512)
        self.out = torch.nn.Linear(512, d)
        with torch.no_grad():
            for layer in (self.hidden, self.out):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.weight.shape[1] ** 0.5)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # any image size (torchmetrics probes with one 299 x 299 RGB image)
        x = torch.nn.functional.adaptive_avg_pool2d(x.float().mean(1, keepdim=True), 8) / 255.0
        return torch.tanh(self.out(torch.tanh(self.hidden(x.reshape(x.shape[0], -1)))))


@pytest.mark.parametrize("impl", ["torchmetrics", "fidkit"])
def test_bench_compute(benchmark, impl: str) -> None:
    d, n = (D_SMOKE, N_SMOKE) if benchmark.disabled else (D, N_COMPUTE)
    net = _Features(d)
    g = torch.Generator().manual_seed(2)
    real = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g)
    fake = torch.clamp(real.float() * 0.9 + 20, 0, 255).to(torch.uint8)
    ex = fidkit.from_torch(net, "", name="bench-features", input_size=(8, 8), channels=1, input_range=(0, 255),
                           policy="mnist")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if impl == "torchmetrics":
            from torchmetrics.image.fid import FrechetInceptionDistance

            metric = FrechetInceptionDistance(feature=net)
        else:
            metric = _fidkit_fid(ex)
        for lo in range(0, n, 500):  # the same batches as fidkit's features below
            if impl == "torchmetrics":
                metric.update(real[lo:lo + 500].float(), real=True)
                metric.update(fake[lo:lo + 500].float(), real=False)
            else:
                metric.update(real[lo:lo + 500], real=True)
                metric.update(fake[lo:lo + 500])

    def run() -> float:
        metric._computed = None  # torchmetrics caches compute() until the next update
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(metric.compute())

    benchmark.group = f"torchmetrics FID vs fidkit: compute, d={d}, {n} + {n} rows"
    value = benchmark.pedantic(run, rounds=1 if impl == "torchmetrics" else 3, iterations=1, warmup_rounds=0)
    feats = [np.concatenate([ex.features(x[lo:lo + 500]) for lo in range(0, n, 500)]) for x in (real, fake)]
    a, b = (fidkit.StatsAccumulator().update(f).stats() for f in feats)
    exact = fidkit.frechet_distance(a.mean, a.cov, b.mean, b.cov)
    rel = abs(value - exact) / abs(exact)
    benchmark.extra_info.update({"impl": impl, "fid": value, "exact": exact, "relative_error": rel})
    if impl == "fidkit":
        assert rel < 1e-10
    else:  # float32 features summed in float64, eigvals of a non-symmetric product: recorded, loosely bounded
        assert rel < 1e-2
