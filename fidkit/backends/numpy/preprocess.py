"""The numpy preprocess: the float64 reference of every policy, on the host (`fidkit.backends.common`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...resize import crop, quantize, resample
from ..common import LUMA_RGB, run_preprocess, to_255, to_numpy

if TYPE_CHECKING:
    from ...extraction import InputConvention
    from ...resize import ResizePolicy


class _NumpyOps:
    """`fidkit.backends.common.Ops` on numpy arrays: NHWC, float64 wherever precision is at stake."""

    work_layout = "NHWC"

    def to_runtime(self, obj: Any) -> np.ndarray:
        return to_numpy(obj)

    def shape(self, x: np.ndarray) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype(self, x: np.ndarray) -> np.dtype:
        return x.dtype

    def expand(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.expand_dims(x, axis)

    def transpose(self, x: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
        return x.transpose(perm)

    def channels(self, x: np.ndarray, keep: int, replicate: bool) -> np.ndarray:
        return np.repeat(x[..., :1], 3, axis=-1) if replicate else x[..., :keep]

    def extremes(self, x: np.ndarray) -> tuple[float, float]:
        return float(np.min(x)), float(np.max(x))  # NaN propagates: judged non-finite

    def to_255(self, x: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
        return to_255(x, value_range)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return quantize(x)

    def resize(self, x: np.ndarray, policy: ResizePolicy, size: tuple[int, int]) -> np.ndarray:
        return resample(x, policy, size)

    def crop(self, x: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        return crop(x, box)

    def concat(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(x, np.float32) for x in xs])

    def convention(self, x: np.ndarray, conv: InputConvention) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if conv.channels == 1:
            x = x @ np.asarray(LUMA_RGB)[:, None]
        lo, hi = conv.input_range
        if (lo, hi) != (0.0, 255.0):
            x = x * ((hi - lo) / 255.0) + lo
        if conv.mean is not None:
            x = (x - np.asarray(conv.mean)) / np.asarray(conv.std)
        return x.transpose(0, 3, 1, 2) if conv.layout == "NCHW" else x


def preprocess(policy: ResizePolicy, convention: InputConvention, device: str = "cpu") -> Any:
    """Returns the numpy preprocess for ``policy`` in front of a network taking ``convention``."""
    ops = _NumpyOps()

    def run(batch: Any, **kwargs: Any) -> np.ndarray:
        return run_preprocess(ops, policy, convention, batch, **kwargs)

    return run
