"""The torch preprocess: every policy on the device, NCHW, in front of any torch network.

Tensors already on the extractor's device are used in place (never modified); numpy arrays travel as
they are (uint8 stays uint8: a quarter of the bytes). See `fidkit.backends.common` for the steps.
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


def _torch() -> Any:
    return import_runtime("torch", "the torch runtime")


class _TorchOps:
    """`fidkit.backends.common.Ops` on torch tensors on one device, NCHW."""

    work_layout = "NCHW"

    def __init__(self, device: Any) -> None:
        self.torch = _torch()
        self.device = device

    def to_runtime(self, obj: Any) -> Any:
        torch = self.torch
        if isinstance(obj, torch.Tensor):
            t = obj.detach()
            if t.dtype in (torch.bfloat16, torch.float16):
                t = t.to(torch.float32)
            return t.to(self.device)
        arr = to_numpy(obj)
        if arr.dtype == np.uint16:  # torch's uint16 lacks most kernels
            arr = arr.astype(np.int32)
        elif not arr.flags.writeable:  # a memory-mapped .npy batch: torch wants memory it may write
            arr = np.array(arr)
        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype(self, x: Any) -> np.dtype:
        if x.dtype == self.torch.bool:
            return np.dtype(np.bool_)
        return np.dtype(str(x.dtype).removeprefix("torch."))

    def expand(self, x: Any, axis: int) -> Any:
        return x.unsqueeze(axis)

    def transpose(self, x: Any, perm: tuple[int, ...]) -> Any:
        return x.permute(*perm)

    def channels(self, x: Any, keep: int, replicate: bool) -> Any:
        return x[:, :1].expand(-1, 3, -1, -1) if replicate else x[:, :keep]

    def extremes(self, x: Any) -> tuple[float, float]:
        torch = self.torch
        both = torch.stack([x.min(), x.max()]).to(torch.float64).cpu().numpy()
        return float(both[0]), float(both[1])

    def to_255(self, x: Any, value_range: tuple[float, float]) -> Any:
        torch = self.torch
        lo, hi = value_range
        if value_range == (0.0, 255.0):
            return x.to(torch.float32).clamp(0.0, 255.0)
        # float64 then one rounding: the numpy reference's arithmetic, bit for bit
        return ((x.to(torch.float64) - lo) * (255.0 / (hi - lo))).to(torch.float32).clamp_(0.0, 255.0)

    def quantize(self, x: Any) -> Any:
        return self.torch.round(x).clamp_(0.0, 255.0)

    def resize(self, x: Any, policy: ResizePolicy, size: tuple[int, int]) -> Any:
        from .resize import resize_batch

        return resize_batch(x, policy, size)  # float32 NCHW from any dtype and layout, in one copy

    def crop(self, x: Any, box: tuple[int, int, int, int]) -> Any:
        t, left, h, w = box
        return x[:, :, t:t + h, left:left + w]

    def concat(self, xs: Sequence[Any]) -> Any:
        return self.torch.cat([x.to(self.torch.float32) for x in xs])

    def convention(self, x: Any, conv: InputConvention) -> Any:
        torch = self.torch
        x = x.to(torch.float32)
        if conv.channels == 1:
            luma = torch.tensor(LUMA_RGB, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
            x = (x * luma).sum(1, keepdim=True)
        lo, hi = conv.input_range
        if (lo, hi) != (0.0, 255.0):
            x = x * ((hi - lo) / 255.0) + lo
        if conv.mean is not None:
            mean = torch.tensor(conv.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(conv.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x.permute(0, 2, 3, 1).contiguous() if conv.layout == "NHWC" else x


def preprocess(policy: ResizePolicy, convention: InputConvention, device: str = "cpu") -> Any:
    """Returns the torch preprocess for ``policy`` in front of a network taking ``convention``."""
    from .network import resolve_device

    torch = _torch()
    ops = _TorchOps(resolve_device(device) if isinstance(device, str) else device)

    def run(batch: Any, **kwargs: Any) -> Any:
        with torch.inference_mode():
            return run_preprocess(ops, policy, convention, batch, **kwargs)

    return run
