"""The torch fast path of every resize policy: batched NCHW float32 tensors, on their own device.

Policies whose library is torch call ``F.interpolate`` itself; the others (Pillow, TF1) apply the
per-axis weights of the numpy reference (`fidkit.resize`) band by band (`resize_blocks`) as float32
matrix products, or Pillow's fixed-point weights as exact integer arithmetic in float32 (split weights)
or float64 matrix products where the policy quantizes its output, so the result equals the reference.
The float policies run the height, then the width, whose column bands write the output in place; on CPU
outputs come from `_CpuBuffers`, memory recycled once no tensor refers to it.
"""

from __future__ import annotations

import sys
import threading
from functools import lru_cache
from typing import Any

import numpy as np

from ...errors import InputError
from ...registry import import_runtime
from ...resize import (
    BLOCK,
    ResizePolicy,
    check_size,
    get_policy,
    resize_blocks,
    resize_plan,
    shifted_passes,
)
from ...resize import PIL_PRECISION_BITS as _BITS

#: Each pass's weights sum to 1, so resampling x - c and adding c back is the same resize; centring the
#: 0..255 values on 0 halves their magnitude and with it float32 rounding (4x less error measured).
_CENTRE = 128.0
_HALF = 1 << (_BITS - 1)
#: A height pass (or a pass of Pillow's uint8 path) over at most this many inputs runs as one dense product:
#: its bands' results are concatenated (torch.cat), a copy that cost more than the multiply-adds bands save
#: (32 -> 299: 58 -> 37 ms for 64 images; at 128 inputs bands win, 11 -> 5 ms for 16).
_DENSE_MAX = 64

#: output rows per slab of the last pass, ~16 MB (L3-sized): 10-25% faster than whole-batch sweeps at 32 px
_ROWS_BYTES = 16 << 20

#: Pillow's fixed-point weights are split as w = hi * 2**11 + lo so that every product with a uint8 value
#: and every partial sum stays below 2**24: two float32 matrix products are then exact integer arithmetic.
_SPLIT = 1 << 11
_EXACT_F32 = float(1 << 24)


def _torch() -> Any:
    return import_runtime("torch", "the torch resize")


@lru_cache(maxsize=128)
def _bands(policy: ResizePolicy, n_in: int, n_out: int, device: str, dtype: str,
           dense_max: int = _DENSE_MAX) -> list[tuple[int, int, int, int, Any]] | None:
    """Returns (o0, o1, i0, i1, band) per block of outputs (one dense block when ``n_in <= dense_max``), the
    band on ``device``: float32/float64 weights, ``"scaled64"`` Pillow's fixed-point weights times 2**-22,
    or for ``dtype="split"`` the pair (hi, lo) of float32 fixed-point halves (None if float32 cannot be
    exact)."""
    torch = _torch()
    out = []
    for o0, o1, i0, i1, band in resize_blocks(policy, n_in, n_out, n_out if n_in <= dense_max else BLOCK):
        if dtype == "split":
            w = band.astype(np.int64)
            hi = np.floor_divide(w, _SPLIT)
            lo = w - hi * _SPLIT
            if 255.0 * max(np.abs(hi).sum(axis=1).max(), lo.sum(axis=1).max()) >= _EXACT_F32:
                return None
            m = tuple(torch.tensor(h, dtype=torch.float32, device=device) for h in (hi, lo))
        elif dtype == "scaled64":
            m = torch.tensor(band * 2.0 ** -_BITS, dtype=torch.float64, device=device)
        else:
            m = torch.tensor(band, dtype=getattr(torch, dtype), device=device)
        out.append((o0, o1, i0, i1, m))
    return out


def _apply(y: Any, bands: list[tuple[int, int, int, int, Any]], axis: str, pick: int | None = None,
           out: Any = None) -> Any:
    """One pass: each band's product with the inputs it reads, the results side by side (into ``out``)."""
    torch = _torch()
    if len(bands) == 1:
        _o0, _o1, i0, i1, m = bands[0]
        m = m if pick is None else m[pick]
        a, b = (y[..., i0:i1], m.T) if axis == "w" else (m, y[..., i0:i1, :])
        return torch.matmul(a, b) if out is None else torch.matmul(a, b, out=out)
    parts = []
    for _o0, _o1, i0, i1, m in bands:
        m = m if pick is None else m[pick]
        parts.append(torch.matmul(y[..., i0:i1], m.T) if axis == "w" else torch.matmul(m, y[..., i0:i1, :]))
    dim = -1 if axis == "w" else -2
    return torch.cat(parts, dim=dim) if out is None else torch.cat(parts, dim=dim, out=out)


def _prefer_split(x: Any) -> bool:
    """Whether to use split float32 weights: on CUDA (float64 is slow on most GPUs) unless TF32 would
    round the products; on CPU float64 is faster (measured)."""
    return bool(x.is_cuda and not _torch().backends.cuda.matmul.allow_tf32)


def _fixed_pass(x: Any, policy: ResizePolicy, n_in: int, n_out: int, axis: str) -> Any:
    """One pass of Pillow's uint8 arithmetic on integer values, exact: float32 products of split weights,
    or float64 products of the weights times 2**-22 (exact: integers times a power of two, sums below
    2**53) whose ``floor(acc + 1/2)`` is Pillow's ``(acc + 2**21) >> 22``; float64 levels come back."""
    torch = _torch()
    device = str(x.device)
    split = _bands(policy, n_in, n_out, device, "split") if _prefer_split(x) else None
    if split is None:
        acc = _apply(x.to(torch.float64), _bands(policy, n_in, n_out, device, "scaled64"), axis)
        return acc.add_(0.5).floor_().clamp_(0, 255)  # in place: 3x faster
    x = x.to(torch.float32)  # uint8 levels, exact (the pass before may have run in float64)
    acc = (_apply(x, split, axis, 0).to(torch.int64) * _SPLIT + _apply(x, split, axis, 1).to(torch.int64) + _HALF)
    return torch.clamp(acc >> _BITS, 0, 255).to(torch.float32)


#: images per slice of the batch on Pillow's uint8 path, for ~8 MB of float64 work at a time (cache-sized)
_INTEGER_SLICE_BYTES = 8 << 20


def _integer_passes(x: Any, policy: ResizePolicy, plan: list[tuple[str, int, int]], out_h: int,
                    out_w: int) -> Any:
    """Pillow's uint8 path, slice by slice of the batch into one output: each in-place pass over a float64
    intermediate cost ~10 ms at full batch size (137 MB at 64 x 299 x 299 x 3), ~7x less on a slice that
    stays in cache."""
    torch = _torch()
    n, c, in_h, in_w = x.shape
    out = _empty((n, c, out_h, out_w), x)
    largest = max([in_h * in_w] + [in_h * n_o if a == "w" else n_o * in_w for a, _n_i, n_o in plan[:1]]
                  + [out_h * out_w])
    step = n if x.is_cuda else max(1, _INTEGER_SLICE_BYTES // (8 * c * largest))
    for b0 in range(0, n, step):
        y = x[b0:b0 + step].to(torch.float64).round_().clamp_(0, 255)
        for axis, n_in, n_out in plan:
            y = _fixed_pass(y, policy, n_in, n_out, axis)
        out[b0:b0 + step].copy_(y)
    return out


class _CpuBuffers:
    """Output memory for CPU batches, recycled: a fresh 69 MB output (64 x 3 x 299 x 299 float32) costs
    17-20 ms of page faults in torch's allocator, and on the development VM 80-100 ms in bursts (the kernel
    zeroing fresh pages), while a batched resize itself needs ~8 ms. A buffer is handed out again
    only when no tensor, view or array refers to it any more (its reference count says so); at most
    ``limit`` bytes are kept."""

    def __init__(self, limit: int = 256 << 20) -> None:
        self.limit = limit
        self.buffers: list[np.ndarray] = []
        self.lock = threading.Lock()

    def empty(self, shape: tuple[int, ...]) -> Any:
        torch = _torch()
        with self.lock:
            for i in range(len(self.buffers)):
                # references to a free buffer: the list and getrefcount's argument; more: a live tensor
                if self.buffers[i].shape == shape and sys.getrefcount(self.buffers[i]) <= 2:
                    self.buffers.append(self.buffers.pop(i))
                    return torch.from_numpy(self.buffers[-1])
            buf = np.empty(shape, dtype=np.float32)
            self.buffers.append(buf)
            while sum(b.nbytes for b in self.buffers) > self.limit and len(self.buffers) > 1:
                self.buffers.pop(0)
            return torch.from_numpy(buf)


_CPU_BUFFERS = _CpuBuffers()


def _empty(shape: tuple[int, ...], like: Any) -> Any:
    """An uninitialised float32 tensor on ``like``'s device (on CPU from `_CpuBuffers`)."""
    if like.device.type == "cpu":
        return _CPU_BUFFERS.empty(tuple(int(v) for v in shape))
    return _torch().empty(shape, dtype=_torch().float32, device=like.device)


def _float_passes(x: Any, policy: ResizePolicy, out_h: int, out_w: int) -> Any:
    """The float32 path of the Pillow and TF1 policies: the height, then the width (any order is the same
    linear map; this one lets the last pass write the output in place, column band by column band).

    Values are shifted by -128 where `fidkit.resize.shifted_passes` says (float32 rounding)."""
    torch = _torch()
    n, c, in_h, in_w = x.shape
    y = x.reshape(n * c, in_h, in_w)
    device = str(x.device)
    passes = [(axis, n_in, n_out) for axis, n_in, n_out in (("h", in_h, out_h), ("w", in_w, out_w))
              if n_in != n_out]
    shifted = False
    shifts = shifted_passes(policy, passes, (in_h, in_w))
    for i, (axis, n_in, n_out) in enumerate(passes):
        want = shifts[i]
        if want != shifted:
            y = torch.sub(y, _CENTRE, out=_empty(y.shape, x)) if i == 0 else y.add_(-_CENTRE if want else _CENTRE)
            shifted = want
        bands = _bands(policy, n_in, n_out, device, "float32", dense_max=_DENSE_MAX if axis == "h" else 0)
        if axis == "h":
            y = _apply(y, bands, "h", out=_empty((n * c, n_out, in_w), x))
            continue
        out = _empty((n * c, y.shape[1], n_out), x)
        flat_in, flat_out = y.reshape(-1, n_in), out.view(-1, n_out)
        rows = flat_out.shape[0]
        slabs = 1 if x.is_cuda else -(-rows * n_out * 4 // _ROWS_BYTES)  # ceil: even slabs of <= 16 MB
        step = -(-rows // slabs)
        for r0 in range(0, rows, step):  # a slab of rows at a time, finished while in cache
            rows_in, rows_out = flat_in[r0:r0 + step], flat_out[r0:r0 + step]
            for o0, o1, i0, i1, m in bands:
                torch.mm(rows_in[:, i0:i1], m.T, out=rows_out[:, o0:o1])
            _finish(rows_out, policy, shifted)
        return out.reshape(n, c, out_h, out_w)
    return _finish(y, policy, shifted).reshape(n, c, out_h, out_w)


def _finish(y: Any, policy: ResizePolicy, shifted: bool = False) -> Any:
    """Adds the shift back, then the policy's rounding and clipping, in place."""
    if shifted:
        y.add_(_CENTRE)
    if policy.quantize_output:
        y.round_()
    if policy.clip or policy.quantize_output:
        y.clamp_(0.0, 255.0)
    return y


def resize_batch(x: Any, policy: ResizePolicy | str, size: tuple[int, int]) -> Any:
    """Returns the NCHW tensor ``x`` (0..255 scale; any real dtype and memory layout, float32 NCHW
    contiguous avoids a copy) resized to ``size`` (h, w) under ``policy``, as float32 NCHW.

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
    if x.dtype != torch.float32 or not x.is_contiguous():  # one pass, into recycled memory on CPU
        x = _empty(tuple(x.shape), x).copy_(x)
    plan = resize_plan(policy, (in_h, in_w), (out_h, out_w))
    if policy.integer_path:
        return _integer_passes(x, policy, plan, out_h, out_w)
    if policy.library == "torch":
        # F.interpolate itself, into an output from `_empty` (the aten op's out= form: the same kernel)
        op = f"_upsample_{policy.filter}2d_aa" if policy.antialias else f"upsample_{policy.filter}2d"
        y = _empty((*x.shape[:2], out_h, out_w), x)
        getattr(torch.ops.aten, op).out(x, [out_h, out_w], False, None, None, out=y)
        return _finish(y, policy)
    return _float_passes(x, policy, out_h, out_w)
