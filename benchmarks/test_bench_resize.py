"""Resize throughput (images/s) per policy and input size to 299 x 299: numpy reference, each runtime's
batched fast path, and in the same run clean-fid's per-image resizer and a per-image Pillow loop.

Run: ``pytest benchmarks/test_bench_resize.py --benchmark-columns=mean,rounds --benchmark-group-by=group``;
each benchmark's ``extra_info`` holds images/s. Runtimes that are not installed are skipped.
"""

from __future__ import annotations

import importlib.util
import statistics
import time

import numpy as np
import pytest
from PIL import Image

if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401  (before tensorflow, always)

from fidkit.resize import resize

OUT = (299, 299)
#: input side -> batch size (bounded memory: 1024^2 float32 RGB images are 12 MB each)
INPUTS = {32: 64, 64: 32, 256: 8, 1024: 4}
POLICIES = ["clean", "legacy-tensorflow", "legacy-pytorch", "pil-bilinear", "torchvision"]


def _images(side: int) -> np.ndarray:
    rng = np.random.default_rng(side)
    y, x = np.mgrid[0:side, 0:side]
    smooth = 128 + 100 * np.sin(x / (side / 9))[..., None] * np.cos(y / (side / 7))[..., None]
    return np.clip(np.rint(smooth + rng.normal(0, 20, (INPUTS[side], side, side, 3))), 0, 255).astype(np.uint8)


def _run(benchmark, fn, n: int, label: str) -> None:
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["impl"] = label
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["images_per_s"] = n / benchmark.stats.stats.mean


def _fast_path(runtime: str, x: np.ndarray, policy: str):
    if runtime == "numpy":
        xf = x.astype(np.float32)
        return lambda: resize(xf, policy, OUT)
    if importlib.util.find_spec({"torch": "torch", "tf": "tensorflow", "jax": "jax"}[runtime]) is None:
        pytest.skip(f"{runtime} not installed")
    mod = importlib.import_module(f"fidkit.backends.{runtime}.resize")
    if runtime == "torch":
        import torch

        t = torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2).contiguous()
        return lambda: mod.resize_batch(t, policy, OUT)
    if runtime == "tf":
        import tensorflow as tf

        t = tf.constant(x.astype(np.float32))
        return lambda: mod.resize_batch(t, policy, OUT).numpy()
    import jax.numpy as jnp

    t = jnp.asarray(x.astype(np.float32))
    return lambda: mod.resize_batch(t, policy, OUT).block_until_ready()


@pytest.mark.parametrize("side", list(INPUTS))
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("runtime", ["numpy", "torch", "tf", "jax"])
def test_bench_fidkit(benchmark, runtime: str, policy: str, side: int) -> None:
    x = _images(side)
    fn = _fast_path(runtime, x, policy)
    fn()
    benchmark.group = f"{side}->299"
    _run(benchmark, fn, len(x), f"fidkit {runtime} {policy}")


@pytest.mark.peers
@pytest.mark.parametrize("side", list(INPUTS))
def test_bench_cleanfid_per_image(benchmark, side: int) -> None:
    """clean-fid's 'clean' resizer (Pillow bicubic on float32, one channel at a time), one image at a time."""
    pytest.importorskip("cleanfid")
    from cleanfid.resize import make_resizer

    fn_resize = make_resizer("PIL", False, "bicubic", OUT)
    x = _images(side)
    benchmark.group = f"{side}->299"
    _run(benchmark, lambda: [fn_resize(img) for img in x], len(x), "clean-fid clean (per image)")


@pytest.mark.peers
@pytest.mark.parametrize("side", list(INPUTS))
@pytest.mark.parametrize("runtime", ["torch", "tf", "jax"])
def test_bench_clean_paired_with_cleanfid(benchmark, runtime: str, side: int) -> None:
    """clean-fid's per-image loop and fidkit's batched ``clean`` timed back to back in every round: this
    machine's speed drifts between minutes, a pair run within one does not. ``extra_info["speedup"]`` is
    the median over rounds of (clean-fid's time / fidkit's time)."""
    pytest.importorskip("cleanfid")
    from cleanfid.resize import make_resizer

    fn_resize = make_resizer("PIL", False, "bicubic", OUT)
    x = _images(side)
    fast = _fast_path(runtime, x, "clean")
    ratios = []

    def pair() -> None:
        t0 = time.perf_counter()
        [fn_resize(img) for img in x]
        t1 = time.perf_counter()
        fast()
        ratios.append((t1 - t0) / (time.perf_counter() - t1))

    benchmark.group = f"{side}->299 paired with clean-fid"
    benchmark.pedantic(pair, rounds=7, iterations=1, warmup_rounds=1)
    benchmark.extra_info["impl"] = f"clean-fid loop + fidkit {runtime} clean"
    if benchmark.stats is not None:  # None under --benchmark-disable (one call, no warm-up)
        benchmark.extra_info["speedup"] = statistics.median(ratios[1:])


@pytest.mark.parametrize("side", list(INPUTS))
def test_bench_pil_loop(benchmark, side: int) -> None:
    """Pillow's uint8 bilinear resize one image at a time (the PyTorch-Ignite tutorial's loop)."""
    x = _images(side)
    benchmark.group = f"{side}->299"
    _run(benchmark, lambda: [np.asarray(Image.fromarray(img).resize(OUT, Image.BILINEAR)) for img in x],
         len(x), "PIL bilinear uint8 (per image)")


@pytest.mark.parametrize("side", list(INPUTS))
def test_bench_output_write_floor(benchmark, side: int) -> None:
    """The floor under any batched float32 resize to 299 x 299: allocating and writing the output once."""
    n = INPUTS[side]
    benchmark.group = f"{side}->299"
    _run(benchmark, lambda: np.full((n, 3, *OUT), 1.0, dtype=np.float32), n, "write the float32 output once")
