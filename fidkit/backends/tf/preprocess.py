"""The TensorFlow preprocess: every policy on the device, NHWC, in front of any TF network.

See `fidkit.backends.common` for the steps; tf tensors already placed are used as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...registry import import_runtime
from ..common import LUMA_RGB, run_preprocess, to_numpy

if TYPE_CHECKING:
    from ...extraction import InputConvention
    from ...resize import ResizePolicy


def _tf() -> Any:
    return import_runtime("tf", "the tf runtime")


class _TfOps:
    """`fidkit.backends.common.Ops` on TensorFlow tensors, NHWC, under ``tf.device(device)``."""

    work_layout = "NHWC"

    def __init__(self, device: str) -> None:
        self.tf = _tf()
        self.device = device

    def to_runtime(self, obj: Any) -> Any:
        tf = self.tf
        if isinstance(obj, (tf.Tensor, tf.Variable)):
            return tf.identity(obj) if isinstance(obj, tf.Variable) else obj
        arr = to_numpy(obj)
        if arr.dtype == np.uint16:
            arr = arr.astype(np.int32)
        return tf.convert_to_tensor(np.ascontiguousarray(arr))

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(int(s) for s in x.shape)

    def dtype(self, x: Any) -> np.dtype:
        return np.dtype(x.dtype.as_numpy_dtype)

    def expand(self, x: Any, axis: int) -> Any:
        return self.tf.expand_dims(x, axis)

    def transpose(self, x: Any, perm: tuple[int, ...]) -> Any:
        return self.tf.transpose(x, perm)

    def channels(self, x: Any, keep: int, replicate: bool) -> Any:
        return self.tf.repeat(x[..., :1], 3, axis=-1) if replicate else x[..., :keep]

    def extremes(self, x: Any) -> tuple[float, float]:
        tf = self.tf
        if x.dtype == tf.bool:
            x = tf.cast(x, tf.uint8)
        if x.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(x))):
            return float("nan"), float("nan")
        return float(tf.reduce_min(x).numpy()), float(tf.reduce_max(x).numpy())

    def to_255(self, x: Any, value_range: tuple[float, float]) -> Any:
        tf = self.tf
        lo, hi = value_range
        if value_range == (0.0, 255.0):
            return tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 255.0)
        y = (tf.cast(x, tf.float64) - lo) * (255.0 / (hi - lo))  # the numpy reference's arithmetic
        return tf.clip_by_value(tf.cast(y, tf.float32), 0.0, 255.0)

    def quantize(self, x: Any) -> Any:
        return self.tf.clip_by_value(self.tf.round(x), 0.0, 255.0)

    def resize(self, x: Any, policy: ResizePolicy, size: tuple[int, int]) -> Any:
        from .resize import resize_batch

        return resize_batch(x, policy, size)

    def crop(self, x: Any, box: tuple[int, int, int, int]) -> Any:
        t, left, h, w = box
        return x[:, t:t + h, left:left + w]

    def concat(self, xs: Sequence[Any]) -> Any:
        return self.tf.concat([self.tf.cast(x, self.tf.float32) for x in xs], axis=0)

    def convention(self, x: Any, conv: InputConvention) -> Any:
        tf = self.tf
        x = tf.cast(x, tf.float32)
        if conv.channels == 1:
            x = tf.reduce_sum(x * tf.constant(np.asarray(LUMA_RGB, np.float32)), axis=-1, keepdims=True)
        lo, hi = conv.input_range
        if (lo, hi) != (0.0, 255.0):
            x = x * np.float32((hi - lo) / 255.0) + np.float32(lo)
        if conv.mean is not None:
            x = (x - np.asarray(conv.mean, np.float32)) / np.asarray(conv.std, np.float32)
        return tf.transpose(x, (0, 3, 1, 2)) if conv.layout == "NCHW" else x


def preprocess(policy: ResizePolicy, convention: InputConvention, device: str = "cpu") -> Any:
    """Returns the TensorFlow preprocess for ``policy`` in front of a network taking ``convention``."""
    from .network import resolve_device

    tf = _tf()
    dev = resolve_device(device) if not device.startswith("/") else device
    ops = _TfOps(dev)

    def run(batch: Any, **kwargs: Any) -> Any:
        with tf.device(dev):
            return run_preprocess(ops, policy, convention, batch, **kwargs)

    return run
