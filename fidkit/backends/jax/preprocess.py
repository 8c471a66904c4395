"""The JAX preprocess: every policy on the device, NHWC, in front of any JAX network.

See `fidkit.backends.common` for the steps; jax arrays already on the device stay there. JAX computes in
float32 unless ``jax_enable_x64`` is on: the value-range mapping then rounds once more than the numpy
reference (at most 1 ulp of 255, far inside the runtimes' agreement).
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


def _jax() -> Any:
    return import_runtime("jax", "the jax runtime")


class _JaxOps:
    """`fidkit.backends.common.Ops` on jax arrays committed to one device, NHWC."""

    work_layout = "NHWC"

    def __init__(self, device: Any) -> None:
        self.jax = _jax()
        self.jnp = self.jax.numpy
        self.device = device

    def to_runtime(self, obj: Any) -> Any:
        jax = self.jax
        if isinstance(obj, jax.Array):
            return jax.device_put(obj, self.device)
        arr = to_numpy(obj)
        if arr.dtype == np.uint16:
            arr = arr.astype(np.int32)
        return jax.device_put(np.ascontiguousarray(arr), self.device)

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(int(s) for s in x.shape)

    def dtype(self, x: Any) -> np.dtype:
        return np.dtype(x.dtype)

    def expand(self, x: Any, axis: int) -> Any:
        return self.jnp.expand_dims(x, axis)

    def transpose(self, x: Any, perm: tuple[int, ...]) -> Any:
        return self.jnp.transpose(x, perm)

    def channels(self, x: Any, keep: int, replicate: bool) -> Any:
        return self.jnp.repeat(x[..., :1], 3, axis=-1) if replicate else x[..., :keep]

    def extremes(self, x: Any) -> tuple[float, float]:
        jnp = self.jnp
        both = np.asarray(jnp.stack([jnp.min(x), jnp.max(x)]).astype(jnp.float32))
        return float(both[0]), float(both[1])

    def to_255(self, x: Any, value_range: tuple[float, float]) -> Any:
        jnp = self.jnp
        lo, hi = value_range
        if value_range == (0.0, 255.0):
            return jnp.clip(x.astype(jnp.float32), 0.0, 255.0)
        wide = jnp.float64 if self.jax.config.jax_enable_x64 else jnp.float32
        y = (x.astype(wide) - lo) * (255.0 / (hi - lo))
        return jnp.clip(y.astype(jnp.float32), 0.0, 255.0)

    def quantize(self, x: Any) -> Any:
        return self.jnp.clip(self.jnp.round(x), 0.0, 255.0)

    def resize(self, x: Any, policy: ResizePolicy, size: tuple[int, int]) -> Any:
        from .resize import resize_batch

        return resize_batch(x, policy, size)

    def crop(self, x: Any, box: tuple[int, int, int, int]) -> Any:
        t, left, h, w = box
        return x[:, t:t + h, left:left + w]

    def concat(self, xs: Sequence[Any]) -> Any:
        return self.jnp.concatenate([x.astype(self.jnp.float32) for x in xs])

    def convention(self, x: Any, conv: InputConvention) -> Any:
        jnp = self.jnp
        x = x.astype(jnp.float32)
        if conv.channels == 1:
            x = jnp.sum(x * np.asarray(LUMA_RGB, np.float32), axis=-1, keepdims=True)
        lo, hi = conv.input_range
        if (lo, hi) != (0.0, 255.0):
            x = x * np.float32((hi - lo) / 255.0) + np.float32(lo)
        if conv.mean is not None:
            x = (x - np.asarray(conv.mean, np.float32)) / np.asarray(conv.std, np.float32)
        return jnp.transpose(x, (0, 3, 1, 2)) if conv.layout == "NCHW" else x


def preprocess(policy: ResizePolicy, convention: InputConvention, device: Any = "cpu") -> Any:
    """Returns the JAX preprocess for ``policy`` in front of a network taking ``convention``."""
    from .network import resolve_device

    ops = _JaxOps(resolve_device(device) if isinstance(device, str) else device)

    def run(batch: Any, **kwargs: Any) -> Any:
        return run_preprocess(ops, policy, convention, batch, **kwargs)

    return run
