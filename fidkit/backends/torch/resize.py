"""The torch fast path of every resize policy: batched NCHW float32 tensors, on their own device.

Policies whose library is torch call ``F.interpolate`` itself; the others (Pillow, TF1) apply the
per-axis weights of the numpy reference (`fidkit.resize`) as float32 matrix products, or Pillow's
fixed-point weights as exact integer arithmetic in float32 (split weights) or float64 matrix products
where the policy quantizes its output, so the result equals the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import InputError
from ...registry import import_runtime
from ...resize import PIL_PRECISION_BITS as _BITS
from ...resize import ResizePolicy, check_size, get_policy, resize_matrix, resize_plan

#: Each pass's weights sum to 1, so resampling x - c and adding c back is the same resize; centring the
#: 0..255 values on 0 halves their magnitude and with it float32 rounding (4x less error measured).
_CENTRE = 128.0
_HALF = float(1 << (_BITS - 1))
_INV_ONE = 1.0 / (1 << _BITS)


def _torch() -> Any:
    return import_runtime("torch", "the torch resize")


def _matrix(policy: ResizePolicy, n_in: int, n_out: int, like: Any) -> Any:
    torch = _torch()
    return torch.tensor(resize_matrix(policy, n_in, n_out), dtype=torch.float32, device=like.device)


#: Pillow's fixed-point weights are split as w = hi * 2**11 + lo so that every product with a uint8 value
#: and every partial sum stays below 2**24: two float32 matrix products are then exact integer arithmetic.
_SPLIT = 1 << 11
_EXACT_F32 = float(1 << 24)


def _split_weights(policy: ResizePolicy, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Returns (hi, lo) float32 matrices of Pillow's fixed-point pass, or None if float32 cannot be exact."""
    w = resize_matrix(policy, n_in, n_out).astype(np.int64)
    hi = np.floor_divide(w, _SPLIT)
    lo = w - hi * _SPLIT
    bound = 255.0 * max(np.abs(hi).sum(axis=1).max(), lo.sum(axis=1).max())
    return None if bound >= _EXACT_F32 else (hi.astype(np.float32), lo.astype(np.float32))


def _prefer_split(x: Any) -> bool:
    """Whether to use split float32 weights: on CUDA (float64 is slow on most GPUs) unless TF32 would
    round the products; on CPU float64 is faster (measured)."""
    return bool(x.is_cuda and not _torch().backends.cuda.matmul.allow_tf32)


def _fixed_pass(x: Any, policy: ResizePolicy, n_in: int, n_out: int, axis: str) -> Any:
    """One pass of Pillow's uint8 arithmetic on float32 integer values, exact: float32 products of split
    weights, or float64 products (integers below 2**53)."""
    torch = _torch()

    def apply(m: Any) -> Any:
        return torch.matmul(y, m.T) if axis == "w" else torch.matmul(m, y)

    split = _split_weights(policy, n_in, n_out) if _prefer_split(x) else None
    if split is None:
        y = x.to(torch.float64)
        acc = apply(torch.tensor(resize_matrix(policy, n_in, n_out), dtype=torch.float64, device=x.device))
        return torch.clamp(torch.floor((acc + _HALF) * _INV_ONE), 0, 255).to(torch.float32)
    y = x
    hi, lo = (torch.tensor(m, device=x.device) for m in split)
    acc = apply(hi).to(torch.int64) * _SPLIT + apply(lo).to(torch.int64) + (1 << (_BITS - 1))
    return torch.clamp(acc >> _BITS, 0, 255).to(torch.float32)


def resize_batch(x: Any, policy: ResizePolicy | str, size: tuple[int, int]) -> Any:
    """Returns the NCHW float32 tensor ``x`` (0..255 scale) resized to ``size`` (h, w) under ``policy``.

    Equal to `fidkit.resize.resize` on the same values (1e-4 on the 0..255 scale; bit-exact where the
    policy quantizes). Runs on ``x.device``; ``x`` itself comes back when the size already matches.
    """
    torch = _torch()
    policy = get_policy(policy)
    out_h, out_w = check_size(size)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise InputError(f"resize_batch (torch): expected an NCHW tensor, received "
                         f"{type(x).__name__} of shape {tuple(getattr(x, 'shape', ()))}")
    in_h, in_w = int(x.shape[2]), int(x.shape[3])
    if (in_h, in_w) == (out_h, out_w):
        return x
    x = x.to(torch.float32)
    plan = resize_plan(policy, (in_h, in_w), (out_h, out_w))
    if policy.integer_path:
        y = torch.clamp(torch.round(x), 0, 255)
        for axis, n_in, n_out in plan:
            y = _fixed_pass(y, policy, n_in, n_out, axis)
        return y
    if policy.library == "torch":
        y = torch.nn.functional.interpolate(x, size=(out_h, out_w), mode=policy.filter, align_corners=False,
                                            antialias=policy.antialias)
    else:
        y = x - _CENTRE
        for axis, n_in, n_out in plan:
            m = _matrix(policy, n_in, n_out, x)
            y = torch.matmul(y, m.T) if axis == "w" else torch.matmul(m, y)
        y = y + _CENTRE
    if policy.quantize_output:
        y = torch.round(y)
    if policy.clip or policy.quantize_output:
        y = torch.clamp(y, 0.0, 255.0)
    return y
