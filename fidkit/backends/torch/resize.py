"""The torch fast path of every resize policy: batched NCHW float32 tensors, on their own device.

Policies whose library is torch call ``F.interpolate`` itself; the others (Pillow, TF1) apply the
per-axis weights of the numpy reference (`fidkit.resize`) band by band (`resize_blocks`) as float32
matrix products, or Pillow's fixed-point weights as exact integer arithmetic in float32 (split weights)
or float64 matrix products where the policy quantizes its output, so the result equals the reference.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ...errors import InputError
from ...registry import import_runtime
from ...resize import BLOCK, ResizePolicy, check_size, get_policy, resize_blocks, resize_plan, taps
from ...resize import PIL_PRECISION_BITS as _BITS

#: Each pass's weights sum to 1, so resampling x - c and adding c back is the same resize; centring the
#: 0..255 values on 0 halves their magnitude and with it float32 rounding (4x less error measured).
_CENTRE = 128.0
_HALF = 1 << (_BITS - 1)
_MAX_UNCENTRED_TAPS = 16
#: A pass over at most this many inputs runs as one dense product: side-by-side bands need a copy of the
#: output (torch.cat) that costs more than the multiply-adds they save (32 -> 299: 58 -> 37 ms for 64
#: images; at 128 inputs bands win, 11 -> 5 ms for 16).
_DENSE_MAX = 64

#: Pillow's fixed-point weights are split as w = hi * 2**11 + lo so that every product with a uint8 value
#: and every partial sum stays below 2**24: two float32 matrix products are then exact integer arithmetic.
_SPLIT = 1 << 11
_EXACT_F32 = float(1 << 24)


def _torch() -> Any:
    return import_runtime("torch", "the torch resize")


@lru_cache(maxsize=128)
def _bands(policy: ResizePolicy, n_in: int, n_out: int, device: str,
           dtype: str) -> list[tuple[int, int, Any]] | None:
    """Returns (i0, i1, band) per block of outputs, the band on ``device``: float32/float64 weights, or
    for ``dtype="split"`` the pair (hi, lo) of float32 fixed-point halves (None if float32 cannot be exact)."""
    torch = _torch()
    out = []
    for _o0, _o1, i0, i1, band in resize_blocks(policy, n_in, n_out, n_out if n_in <= _DENSE_MAX else BLOCK):
        if dtype == "split":
            w = band.astype(np.int64)
            hi = np.floor_divide(w, _SPLIT)
            lo = w - hi * _SPLIT
            if 255.0 * max(np.abs(hi).sum(axis=1).max(), lo.sum(axis=1).max()) >= _EXACT_F32:
                return None
            m = tuple(torch.tensor(h, dtype=torch.float32, device=device) for h in (hi, lo))
        else:
            m = torch.tensor(band, dtype=getattr(torch, dtype), device=device)
        out.append((i0, i1, m))
    return out


def _apply(y: Any, bands: list[tuple[int, int, Any]], axis: str, pick: int | None = None) -> Any:
    """One pass: each band's product with the inputs it reads, the results side by side."""
    torch = _torch()
    parts = []
    for i0, i1, m in bands:
        m = m if pick is None else m[pick]
        parts.append(torch.matmul(y[..., i0:i1], m.T) if axis == "w" else torch.matmul(m, y[..., i0:i1, :]))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1 if axis == "w" else -2)


def _prefer_split(x: Any) -> bool:
    """Whether to use split float32 weights: on CUDA (float64 is slow on most GPUs) unless TF32 would
    round the products; on CPU float64 is faster (measured)."""
    return bool(x.is_cuda and not _torch().backends.cuda.matmul.allow_tf32)


def _fixed_pass(x: Any, policy: ResizePolicy, n_in: int, n_out: int, axis: str) -> Any:
    """One pass of Pillow's uint8 arithmetic on integer values, exact: float32 products of split weights,
    or float64 products (integers below 2**53, kept in float64 for the next pass)."""
    torch = _torch()
    device = str(x.device)
    split = _bands(policy, n_in, n_out, device, "split") if _prefer_split(x) else None
    if split is None:
        acc = _apply(x.to(torch.float64), _bands(policy, n_in, n_out, device, "float64"), axis)
        return acc.add_(_HALF).mul_(1.0 / (1 << _BITS)).floor_().clamp_(0, 255)  # in place: 3x faster
    x = x.to(torch.float32)  # uint8 levels, exact (the pass before may have run in float64)
    acc = (_apply(x, split, axis, 0).to(torch.int64) * _SPLIT + _apply(x, split, axis, 1).to(torch.int64) + _HALF)
    return torch.clamp(acc >> _BITS, 0, 255).to(torch.float32)


def _centre_input(policy: ResizePolicy, plan: list[tuple[str, int, int]]) -> bool:
    """Whether to centre the input (a copy of it) rather than the first pass's output: when the input is
    the smaller of the two, or when the first pass sums so many taps that uncentred float32 sums drift
    (299 -> 28 bicubic, 45 taps: 1.2e-4 off the reference; 1024 -> 299, 15 taps: 4.6e-5)."""
    _axis, n_in, n_out = plan[0]
    return len(plan) == 1 or n_out >= n_in or taps(policy, n_in, n_out)[0].shape[1] > _MAX_UNCENTRED_TAPS


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
        return y.to(torch.float32)
    if policy.library == "torch":
        y = torch.nn.functional.interpolate(x, size=(out_h, out_w), mode=policy.filter, align_corners=False,
                                            antialias=policy.antialias)
    else:
        centre_input = _centre_input(policy, plan)
        y = x - _CENTRE if centre_input else x
        for i, (axis, n_in, n_out) in enumerate(plan):
            y = _apply(y, _bands(policy, n_in, n_out, str(x.device), "float32"), axis)
            if i == 0 and not centre_input:
                y.sub_(_CENTRE)
        y.add_(_CENTRE)
    if policy.quantize_output:
        y = torch.round_(y)
    if policy.clip or policy.quantize_output:
        y = torch.clamp_(y, 0.0, 255.0)
    return y
