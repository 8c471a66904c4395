"""Each runtime's batched resize fast path equals the numpy reference, for every policy and many sizes.

The fast paths resample only (`fidkit.resize.resample`); a policy's crops are slices taken around them by
`fidkit.backends.common.run_preprocess`, tested with the CLIP policies in tests/test_clip.py."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from conftest import require_runtime, runtime_sees_gpu, tolerance

from fidkit.errors import InputError
from fidkit.resize import POLICIES, resample

#: same bound as the reference against its library: 1e-4 on the 0..255 scale, 0 where a policy quantizes
TOL = tolerance("resize", "float_paths")
SIZES = [(32, 32, 299, 299), (64, 48, 299, 299), (300, 200, 299, 299), (517, 389, 299, 299),
         (299, 299, 28, 28), (17, 45, 40, 23), (200, 60, 37, 90), (1, 9, 4, 4), (1024, 64, 299, 299)]


def _images(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    smooth = 128 + 100 * np.sin(x / 5.0)[..., None] * np.cos(y / 7.0)[..., None]
    img = smooth + rng.normal(0, 25, (3, h, w, 3))
    img[:, : h // 2, w // 3:] = 250.0
    return np.clip(np.rint(img), 0, 255).astype(np.float32)


def _fast(runtime: str):
    """Returns f(NHWC numpy, policy, size) -> NHWC numpy through the runtime's resize_batch."""
    if runtime == "numpy":
        return resample
    mod = importlib.import_module(f"fidkit.backends.{runtime}.resize")
    if runtime == "torch":
        import torch

        return lambda x, p, s: mod.resize_batch(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), p, s
                                                ).permute(0, 2, 3, 1).numpy()
    if runtime == "tf":
        import tensorflow as tf

        return lambda x, p, s: mod.resize_batch(tf.constant(x), p, s).numpy()
    import jax.numpy as jnp

    return lambda x, p, s: np.asarray(mod.resize_batch(jnp.asarray(x), p, s))


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_fast_path_equals_reference(runtime: str, name: str) -> None:
    fast = _fast(runtime)
    exact = POLICIES[name].quantize_output
    # torch's own antialiased kernels (what the torch fast path calls for library='torch') compute their
    # weights in float32 and sum without fidkit's -128 shift: their budget is resize.torch_kernels
    tol = (tolerance("resize", "torch_kernels") if runtime == "torch" and POLICIES[name].library == "torch"
           and POLICIES[name].antialias else TOL)
    for h, w, oh, ow in SIZES:
        x = _images(h, w)
        ref = resample(x, name, (oh, ow))
        out = fast(x, name, (oh, ow))
        assert out.shape == ref.shape and out.dtype == np.float32
        if exact:
            np.testing.assert_array_equal(out, ref, err_msg=f"{runtime} {name} {h}x{w}->{oh}x{ow}")
        else:
            np.testing.assert_allclose(out, ref, atol=tol, rtol=0, err_msg=f"{runtime} {name} {h}x{w}->{oh}x{ow}")


def test_fast_path_returns_its_input_when_the_size_matches(runtime: str) -> None:
    if runtime == "numpy":
        pytest.skip("the reference returns a float32 copy")
    mod = importlib.import_module(f"fidkit.backends.{runtime}.resize")
    x = _images(12, 10)
    if runtime == "torch":
        import torch

        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        assert mod.resize_batch(t, "clean", (12, 10)) is t
        with pytest.raises(InputError, match="NCHW"):
            mod.resize_batch(t[0], "clean", (5, 5))
    elif runtime == "tf":
        import tensorflow as tf

        t = tf.constant(x)
        assert mod.resize_batch(t, "clean", (12, 10)) is t
        with pytest.raises(InputError, match="NHWC"):
            mod.resize_batch(t[0], "clean", (5, 5))
    else:
        import jax.numpy as jnp

        t = jnp.asarray(x)
        assert mod.resize_batch(t, "clean", (12, 10)) is t
        with pytest.raises(InputError, match="NHWC"):
            mod.resize_batch(t[0], "clean", (5, 5))


@pytest.mark.torch
def test_torch_split_float32_fixed_point_path_is_exact(monkeypatch) -> None:
    """The CUDA route of Pillow's uint8 arithmetic (split float32 weights), checked here on the CPU."""
    require_runtime("torch")
    import torch

    from fidkit.backends.torch import resize as torch_resize

    monkeypatch.setattr(torch_resize, "_prefer_split", lambda x: True)
    for h, w, oh, ow in [*SIZES, (1024, 600, 28, 28)]:
        x = _images(h, w)
        out = torch_resize.resize_batch(torch.from_numpy(x).permute(0, 3, 1, 2), "pil-bilinear", (oh, ow))
        np.testing.assert_array_equal(out.permute(0, 2, 3, 1).numpy(), resample(x, "pil-bilinear", (oh, ow)))


@pytest.mark.tf
def test_tf_tap_by_tap_path_equals_the_reference(monkeypatch) -> None:
    """The GPU route of the tf fast path when TensorFloat-32 is on (gathers, no matrix product), on the CPU."""
    require_runtime("tf")
    import tensorflow as tf

    from fidkit.backends.tf import resize as tf_resize

    monkeypatch.setattr(tf_resize, "_matmul_is_exact", lambda x: False)
    for name in sorted(POLICIES):
        for h, w, oh, ow in SIZES:
            x = _images(h, w)
            out = tf_resize.resize_batch(tf.constant(x), name, (oh, ow)).numpy()
            ref = resample(x, name, (oh, ow))
            tol = 0 if POLICIES[name].quantize_output else TOL
            np.testing.assert_allclose(out, ref, atol=tol, rtol=0, err_msg=f"{name} {h}x{w}->{oh}x{ow}")


def _on_gpu(runtime: str):
    """Returns f(NHWC numpy, policy, size) -> NHWC numpy through the runtime's resize_batch on its GPU."""
    mod = importlib.import_module(f"fidkit.backends.{runtime}.resize")
    if runtime == "torch":
        import torch

        return lambda x, p, s: mod.resize_batch(torch.from_numpy(x).permute(0, 3, 1, 2).cuda(), p, s
                                                ).permute(0, 2, 3, 1).cpu().numpy()
    if runtime == "tf":
        import tensorflow as tf

        def run(x, p, s):
            with tf.device("/GPU:0"):
                return mod.resize_batch(tf.constant(x), p, s).numpy()
        return run
    import jax

    return lambda x, p, s: np.asarray(mod.resize_batch(jax.device_put(x, jax.devices("gpu")[0]), p, s))


@pytest.mark.gpu
@pytest.mark.parametrize("runtime", ["torch", "tf", "jax"])
def test_gpu_fast_path_equals_reference(runtime: str) -> None:
    """What the fast paths are for: on the GPU, every policy still equals the numpy reference."""
    require_runtime(runtime)
    if not runtime_sees_gpu(runtime):
        pytest.skip(f"CUDA is visible but this {runtime} build has no GPU support")
    fast = _on_gpu(runtime)
    for name in sorted(POLICIES):
        for h, w, oh, ow in SIZES:
            x = _images(h, w)
            tol = 0 if POLICIES[name].quantize_output else TOL
            np.testing.assert_allclose(fast(x, name, (oh, ow)), resample(x, name, (oh, ow)), atol=tol, rtol=0,
                                       err_msg=f"{runtime} cuda {name} {h}x{w}->{oh}x{ow}")


@pytest.mark.torch
def test_torch_cpu_buffers_are_reused_only_when_nothing_refers_to_them() -> None:
    require_runtime("torch")
    from fidkit.backends.torch.resize import _CpuBuffers

    pool = _CpuBuffers(limit=3 * 4 * 100)
    a = pool.empty((10, 10))
    view = a[2:].t()
    del a
    b = pool.empty((10, 10))  # ``view`` still holds the first buffer
    assert b.data_ptr() != view.data_ptr() - 2 * 10 * 4
    first = view.data_ptr() - 2 * 10 * 4
    arr = view.numpy()
    del view
    assert pool.empty((10, 10)).data_ptr() not in (first, b.data_ptr())  # a numpy view holds it too
    del arr
    assert pool.empty((10, 10)).data_ptr() == first  # free again: reused
    assert pool.empty((5, 10)).shape == (5, 10)
    assert sum(buf.nbytes for buf in pool.buffers) <= pool.limit


@pytest.mark.torch
@pytest.mark.parametrize("name", ["legacy-pytorch", "torchvision"])
def test_torch_library_policies_are_f_interpolate_itself(name: str) -> None:
    """The torch policies' fast path (aten's out= form, into a recycled buffer) is bit for bit
    ``F.interpolate``, the call the policy names."""
    require_runtime("torch")
    import torch

    from fidkit.backends.torch.resize import resize_batch
    from fidkit.resize import get_policy

    policy = get_policy(name)
    for h, w, oh, ow in SIZES:
        x = torch.from_numpy(_images(h, w)).permute(0, 3, 1, 2).contiguous()
        want = torch.nn.functional.interpolate(x, size=(oh, ow), mode=policy.filter, align_corners=False,
                                               antialias=policy.antialias)
        assert torch.equal(resize_batch(x, name, (oh, ow)), want), f"{name} {h}x{w}->{oh}x{ow}"


@pytest.mark.torch
def test_torch_fast_path_takes_uint8_channels_last_input() -> None:
    """The extractor hands uint8 NHWC memory (an NCHW view) straight to the fast path: same result."""
    require_runtime("torch")
    import torch

    from fidkit.backends.torch.resize import resize_batch

    x = _images(40, 30)
    nhwc_u8 = torch.from_numpy(x.astype(np.uint8)).permute(0, 3, 1, 2)
    nchw_f32 = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    for name in sorted(POLICIES):
        assert torch.equal(resize_batch(nhwc_u8, name, (299, 299)), resize_batch(nchw_f32, name, (299, 299))), name
