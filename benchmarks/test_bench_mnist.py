"""The MNIST extractor and IDX reader against their plain-framework equivalents, same run.

Run: ``pytest benchmarks/test_bench_mnist.py --benchmark-columns=min,mean,rounds``.

- features of 1,000 test images: the ``mnist`` extractor on each runtime (graph interpreter, resize
  check, normalisation) against the training script's own torch module called directly (the floor:
  what a hand-written torch model costs), and against the same module through ``from_torch``;
- reading the 10,000 test images from the uncompressed IDX file: ``fidkit.mnist_data.read_idx`` against
  torchvision's MNIST reader (``read_image_file``, which takes uncompressed files only).
"""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from fidkit.mnist_data import SHIPPED_DIR, load_mnist, read_idx, to_rgb

# torch and torchvision before tensorflow: importing tensorflow and then triton (which torchvision.ops
# pulls in) in one process segfaults; benchmarks do not get tests/conftest.py's import order.
torch = pytest.importorskip("torch")
tv_mnist = pytest.importorskip("torchvision.datasets.mnist")

REPO = Path(__file__).resolve().parent.parent
N = 1000


def _twin():
    spec = importlib.util.spec_from_file_location("fidkit_train_mnist", REPO / "scripts" / "train_mnist.py")
    tm = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tm
    spec.loader.exec_module(tm)
    net = tm.MnistNet()
    with np.load(REPO / "fidkit" / "data" / "fidkit-mnist-v1.npz", allow_pickle=False) as z:
        net.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files}, strict=False)
    return net.eval()


def _plain_torch(net):
    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())[0].numpy()
    return run


@pytest.mark.parametrize("impl", ["torch-module", "from_torch", "mnist-torch", "mnist-tf", "mnist-jax",
                                  "mnist-numpy"])
def test_bench_mnist_features(benchmark, impl: str) -> None:
    from fidkit.adapters import from_torch
    from fidkit.extraction import extractor

    images = to_rgb(load_mnist("test")[0][:N])
    net = _twin()
    if impl == "torch-module":
        fn = _plain_torch(net)
    elif impl == "from_torch":
        fn = from_torch(net, "fc1", name="twin", input_size=(28, 28), policy="mnist",
                        input_range=(0, 255)).features
    else:
        fn = extractor("mnist", runtime=impl.split("-")[1]).features
    fn(images[:10])  # warm-up: jit compilation, lazy imports
    benchmark.group = f"mnist features, {N} images"
    out = benchmark.pedantic(fn, args=(images,), rounds=3, iterations=1, warmup_rounds=0)
    ref = _plain_torch(net)(images)
    assert np.abs(out - ref).max() <= 1e-4 * ref.std()


@pytest.mark.parametrize("impl", ["fidkit", "torchvision"])
def test_bench_mnist_read(benchmark, impl: str, tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(gzip.decompress((SHIPPED_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()))
    if impl == "fidkit":
        def fn() -> np.ndarray:
            return read_idx(path)
    else:
        def fn() -> np.ndarray:
            return tv_mnist.read_image_file(str(path)).numpy()
    benchmark.group = "read 10,000 MNIST test images (uncompressed IDX)"
    out = benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=0)
    np.testing.assert_array_equal(out, load_mnist("test")[0])
