"""The TensorFlow fast path of every resize policy: batched NHWC float32 tensors, on their own device.

The per-axis weights of the numpy reference (`fidkit.resize`) are applied band by band (`band_table`: a
gather of the inputs each run of outputs reads, then one batched float32 product), or tap by tap as
gathers where a matrix product could lose precision (TensorFloat-32 on a GPU); Pillow's fixed-point
uint8 path runs as float64 matrix products (exact integers). The result equals the reference for every
policy, TF1's own included.
"""

from __future__ import annotations

from typing import Any

from ...errors import InputError
from ...registry import import_runtime
from ...resize import PIL_PRECISION_BITS as _BITS
from ...resize import (
    ResizePolicy,
    band_table,
    check_size,
    get_policy,
    resize_matrix,
    resize_plan,
    taps,
)

_EQUATIONS = {"w": "nhwc,ow->nhoc", "h": "nhwc,oh->nowc"}
#: gathered bands (axis 2 -> b, k for "w"; axis 1 for "h") times weight (b, k, o): outputs in band order
_BAND_EQUATIONS = {"w": "nhbkc,bko->nhboc", "h": "nbkwc,bko->nbowc"}
_AXES = {"h": 1, "w": 2}
#: Each pass's weights sum to 1, so resampling x - c and adding c back is the same resize; centring the
#: 0..255 values on 0 halves their magnitude and with it float32 rounding.
_CENTRE = 128.0


def _tf() -> Any:
    return import_runtime("tf", "the tf resize")


def _gather_pass(x: Any, idx_np: Any, w_np: Any, axis: int, dtype: Any) -> Any:
    tf = _tf()
    shape = [1, 1, 1, 1]
    shape[axis] = idx_np.shape[0]
    acc = None
    for j in range(idx_np.shape[1]):
        w = tf.reshape(tf.constant(w_np[:, j], dtype=dtype), shape)
        term = tf.gather(x, tf.constant(idx_np[:, j]), axis=axis) * w
        acc = term if acc is None else acc + term
    return acc


def _band_pass(x: Any, policy: ResizePolicy, n_in: int, n_out: int, axis: str) -> Any:
    """One pass as a gather of each band's inputs and one batched product (`fidkit.resize.band_table`)."""
    tf = _tf()
    idx, w = band_table(policy, n_in, n_out)
    g = tf.gather(x, tf.constant(idx), axis=_AXES[axis])
    y = tf.einsum(_BAND_EQUATIONS[axis], g, tf.constant(w, dtype=tf.float32))
    shape = tf.concat([tf.shape(x)[:_AXES[axis]], [-1], tf.shape(x)[_AXES[axis] + 1:]], axis=0)
    y = tf.reshape(y, shape)
    return y[:, :n_out] if axis == "h" else y[:, :, :n_out]


def _matmul_is_exact(x: Any) -> bool:
    tf = _tf()
    return "GPU" not in x.device.upper() or not tf.config.experimental.tensor_float_32_execution_enabled()


def resize_batch(x: Any, policy: ResizePolicy | str, size: tuple[int, int]) -> Any:
    """Returns the NHWC float32 tensor ``x`` (0..255 scale) resized to ``size`` (h, w) under ``policy``.

    Equal to `fidkit.resize.resize` on the same values (1e-4 on the 0..255 scale; bit-exact where the
    policy quantizes). ``x`` itself comes back when the size already matches.
    """
    tf = _tf()
    policy = get_policy(policy)
    out_h, out_w = check_size(size)
    if not tf.is_tensor(x) or x.shape.rank != 4:
        raise InputError(f"resize_batch (tf): expected an NHWC tensor, received {type(x).__name__} of shape "
                         f"{tuple(getattr(x, 'shape', ()))}")
    in_h, in_w = int(x.shape[1]), int(x.shape[2])
    if (in_h, in_w) == (out_h, out_w):
        return x
    x = tf.cast(x, tf.float32)
    plan = resize_plan(policy, (in_h, in_w), (out_h, out_w))
    if policy.integer_path:
        # Pillow's fixed-point arithmetic, exact in float64 (integers below 2**53; TF32 never applies)
        y = tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.float64)
        for axis, n_in, n_out in plan:
            m = tf.constant(resize_matrix(policy, n_in, n_out), dtype=tf.float64)
            acc = tf.einsum(_EQUATIONS[axis], y, m)
            y = tf.clip_by_value(tf.floor((acc + (1 << (_BITS - 1))) / (1 << _BITS)), 0.0, 255.0)
        return tf.cast(y, tf.float32)
    y = x - _CENTRE
    exact_matmul = _matmul_is_exact(x)
    for axis, n_in, n_out in plan:
        if exact_matmul:
            y = _band_pass(y, policy, n_in, n_out, axis)
        else:
            y = _gather_pass(y, *taps(policy, n_in, n_out), _AXES[axis], tf.float32)
    y = y + _CENTRE
    if policy.quantize_output:
        y = tf.round(y)
    if policy.clip or policy.quantize_output:
        y = tf.clip_by_value(y, 0.0, 255.0)
    return y
