"""The JAX fast path of every resize policy: batched NHWC float32 arrays, jit-compiled, on their device.

The per-axis weights of the numpy reference (`fidkit.resize`) are applied band by band (runs of outputs
times the inputs they read: `resize_blocks`, `band_table`) as products at ``Precision.HIGHEST`` (no
reduced-precision matmul on accelerators), or as Pillow's fixed-point gathers in int32 where the policy
quantizes its output, so the result equals the reference for every policy.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ...errors import InputError
from ...registry import import_runtime
from ...resize import PIL_PRECISION_BITS as _BITS
from ...resize import (
    ResizePolicy,
    band_table,
    check_size,
    get_policy,
    interleaved_bands,
    resize_plan,
    taps,
)

_AXES = {"h": 1, "w": 2}
#: Each pass's weights sum to 1, so resampling x - c and adding c back is the same resize; centring the
#: 0..255 values on 0 halves their magnitude and with it float32 rounding.
_CENTRE = 128.0


def _jax() -> Any:
    return import_runtime("jax", "the jax resize")


def _width_pass(y: Any, bands: Any) -> Any:
    """The pass along the width: 2-D products of column slices (`fidkit.resize.interleaved_bands`)."""
    jax = _jax()
    n, h, _, c = y.shape
    rows = y.reshape(n * h, -1)
    parts = [jax.numpy.matmul(rows[:, c0:c1], m.astype(np.float32), precision=jax.lax.Precision.HIGHEST)
             for c0, c1, m in bands]
    return jax.numpy.concatenate(parts, axis=1).reshape(n, h, -1, c)


def _height_pass(y: Any, idx: Any, w: Any, n_out: int) -> Any:
    """The pass along the height: a gather of each band's rows and one batched product (`band_table`)."""
    jax = _jax()
    g = jax.numpy.take(y, idx, axis=1)  # (N, bands, k, W, C)
    out = jax.numpy.einsum("nbkwc,bko->nbowc", g, w.astype(np.float32), precision=jax.lax.Precision.HIGHEST)
    return out.reshape(y.shape[0], -1, *y.shape[2:])[:, :n_out]


@lru_cache(maxsize=64)
def _compiled(policy: ResizePolicy, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> Any:
    """Returns a jitted function of the batch for one (policy, input size, output size)."""
    jax = _jax()
    jnp = jax.numpy
    plan = resize_plan(policy, in_hw, out_hw)
    if policy.integer_path:
        tables = [(_AXES[a], *taps(policy, i, o)) for a, i, o in plan]

        def run(x: Any) -> Any:
            y = jnp.clip(jnp.round(x), 0, 255).astype(jnp.int32)
            for axis, idx, w in tables:
                shape = [1, 1, 1, 1]
                shape[axis] = idx.shape[0]
                acc = jnp.int32(1 << (_BITS - 1))
                for j in range(idx.shape[1]):
                    acc = acc + jnp.take(y, idx[:, j], axis=axis) * w[:, j].astype("int32").reshape(shape)
                y = jnp.clip(jnp.right_shift(acc, _BITS), 0, 255)
            return y.astype(jnp.float32)
    else:
        def run(x: Any) -> Any:
            y = x.astype(jnp.float32) - _CENTRE
            for axis, n_in, n_out in plan:
                if axis == "w":
                    y = _width_pass(y, interleaved_bands(policy, n_in, n_out, y.shape[3]))
                else:
                    y = _height_pass(y, *band_table(policy, n_in, n_out), n_out)
            y = y + _CENTRE
            if policy.quantize_output:
                y = jnp.round(y)
            if policy.clip or policy.quantize_output:
                y = jnp.clip(y, 0.0, 255.0)
            return y
    return jax.jit(run)


def resize_batch(x: Any, policy: ResizePolicy | str, size: tuple[int, int]) -> Any:
    """Returns the NHWC float32 array ``x`` (0..255 scale) resized to ``size`` (h, w) under ``policy``.

    Equal to `fidkit.resize.resize` on the same values (1e-4 on the 0..255 scale; bit-exact where the
    policy quantizes). ``x`` itself comes back when the size already matches.
    """
    policy = get_policy(policy)
    out_hw = check_size(size)
    if getattr(x, "ndim", None) != 4:
        raise InputError(f"resize_batch (jax): expected an NHWC array, received {type(x).__name__} of shape "
                         f"{tuple(getattr(x, 'shape', ()))}")
    in_hw = (int(x.shape[1]), int(x.shape[2]))
    if in_hw == out_hw:
        return x
    return _compiled(policy, in_hw, out_hw)(x)
