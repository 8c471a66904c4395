"""Resize policies: everything between the pixels of an image and the tensor a network sees, as a value.

The same images and weights give FIDs 3-5% apart between pytorch-fid and torch-fidelity only because
they resize and normalise differently, and aliased resizing moves FID further (Parmar, Zhang and Zhu,
"On Aliased Resizing and Surprising Subtleties in GAN Evaluation", CVPR 2022). fidkit names each choice
as a `ResizePolicy`, records its name in every statistic, and implements each in numpy here, exactly as
its library does:

* ``pil``: Pillow's ``Image.resize`` (``ImagingResample``): a separable, always antialiased filter whose
  support widens with the downscale factor; the horizontal pass runs first, except where the installed
  Pillow runs the vertical one first (12.2-12.3: images over 100 times taller than wide whose height
  shrinks; since 13: when the height shrinks much more than the width; see `_pil_vertical_first`).
  On float32 (mode ``F``) the weights and sums are double and the intermediate image is float32; on
  uint8 images the weights are fixed-point integers with 22 fractional bits and each pass rounds and
  clamps to uint8.
* ``tf1``: TensorFlow 1's ``resize_bilinear(align_corners=False)`` without half-pixel centres: the source
  coordinate of output pixel ``i`` is ``i * in / out`` in float32.
* ``torch``: ``torch.nn.functional.interpolate(align_corners=False)``: half-pixel centres; without
  antialias a 2-tap bilinear (source clamped at 0) or a 4-tap Keys cubic with a = -0.75; with antialias
  the same filters as Pillow (a = -0.5 for bicubic).

A policy may also crop (``crop``): ``"resize-then-center"`` resizes, keeping the aspect ratio, until the
image covers the output, then takes its centre (torchvision ``Resize(n)`` then ``CenterCrop(n)``: CLIP's own
preprocessing), and ``"center-then-resize"`` first takes the largest centred box of the output's aspect
ratio, then resizes it (CMMD's ``_center_crop_and_resize``); `geometry` gives the boxes, and every runtime
crops by slicing.

Every resampling is expressed as per-axis taps (source index, weight) computed once per (in, out) size;
the runtime fast paths in ``fidkit.backends.<runtime>.resize`` apply the same taps on device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from .errors import InputError

#: Fractional bits of Pillow's fixed-point weights on 8-bit images (``PRECISION_BITS`` in Resample.c).
PIL_PRECISION_BITS = 32 - 8 - 2
#: First Pillow version that runs the vertical pass first, for tall images (see `_pil_vertical_first`).
PIL_TALL_VERTICAL_FIRST_SINCE = (12, 2)
#: First Pillow version whose vertical-first rule compares how much each axis shrinks (ditto).
PIL_VERTICAL_FIRST_SINCE = (13, 0)

Triple = tuple[float, float, float]
#: A crop: (top, left, height, width) in pixels of the image it is taken from.
Box = tuple[int, int, int, int]
#: The crops a policy can make around its resize (`geometry`).
CROPS = ("none", "resize-then-center", "center-then-resize")


@dataclass(frozen=True)
class ResizePolicy:
    """How images become network input: quantization, resampling library and filter, normalisation.

    The network sees ``(resize(x) - mean) / std`` with ``x`` on the 0..255 scale.
    """

    name: str
    library: Literal["pil", "tf1", "torch"]
    filter: Literal["bicubic", "bilinear"]
    antialias: bool
    quantize_input: bool
    quantize_output: bool
    mean: Triple
    std: Triple
    description: str
    #: clamp the resized image to [0, 255] (clean-fid clips Pillow's bicubic overshoot)
    clip: bool = False
    #: "none" (resize to the output size), "resize-then-center" (resize keeping the aspect ratio, then centre
    #: crop) or "center-then-resize" (centre crop to the output's aspect ratio, then resize): see `geometry`
    crop: str = "none"

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise InputError(f"resize policy {self.name!r}: crop={self.crop!r} is not one of {list(CROPS)}")
        key = (self.library, self.filter, self.antialias)
        if key not in _KERNELS:
            raise InputError(f"resize policy {self.name!r}: library={self.library!r}, filter={self.filter!r}, "
                             f"antialias={self.antialias} is not implemented; supported: "
                             f"{sorted(_KERNELS)}")
        for label, value in (("mean", self.mean), ("std", self.std)):
            if len(value) != 3:
                raise InputError(f"resize policy {self.name!r}: {label} must have 3 entries, got {value!r}")
        if min(self.std) <= 0:
            raise InputError(f"resize policy {self.name!r}: std must be positive, got {self.std!r}")

    @property
    def integer_path(self) -> bool:
        """Whether resizing runs Pillow's fixed-point uint8 arithmetic (Pillow on uint8 images)."""
        return self.library == "pil" and self.quantize_output

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """Returns ``(images - mean) / std`` in float32, for NHWC images on the 0..255 scale."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return ((np.asarray(images, np.float32) - mean) / std).astype(np.float32)


# ---------------------------------------------------------------------------------------------- filters


def _triangle(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _keys_cubic(a: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
        return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))
    return f


#: (filter function, support in input pixels at scale 1) for the antialiased separable resamplers.
_FILTERS = MappingProxyType({"bilinear": (_triangle, 1.0), "bicubic": (_keys_cubic(-0.5), 2.0)})


def _antialiased_taps(in_size: int, out_size: int, filter_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` (and torch's antialiased interpolate): windows and weights."""
    fn, base_support = _FILTERS[filter_name]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = base_support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    centers = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    # C's (int) cast truncates toward zero, then the window is clipped to the image
    xmin = np.maximum(np.trunc(centers - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(centers + support + 0.5).astype(np.int64), in_size) - xmin
    j = np.arange(ksize, dtype=np.int64)
    valid = j[None, :] < xmax[:, None]
    w = fn((j[None, :] + xmin[:, None] - centers[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(valid, w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=w, where=total != 0)
    idx = np.minimum(xmin[:, None] + j[None, :], in_size - 1)
    return idx, w


def _tf1_bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """TF1 ``resize_bilinear`` (no half-pixel centres): coordinates in float32 as TensorFlow computes them."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size, dtype=np.float32) * scale
    lo_f = np.floor(src)
    lo = np.maximum(lo_f.astype(np.int64), 0)
    hi = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
    lerp = (src - lo_f).astype(np.float64)
    return np.stack([lo, hi], axis=1), np.stack([1.0 - lerp, lerp], axis=1)


def _torch_source_coords(in_size: int, out_size: int) -> np.ndarray:
    """torch's half-pixel source coordinates in float32: ``scale * (i + 0.5) - 0.5`` as one fused
    multiply-add (what torch's compiled CPU kernels compute), rounded once to float32."""
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(out_size, dtype=np.float32) + np.float32(0.5)
    return (np.float64(scale) * dst.astype(np.float64) - 0.5).astype(np.float32)


def _torch_bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``F.interpolate(mode='bilinear', align_corners=False)``: half-pixel, source clamped at 0, float32."""
    src = np.maximum(_torch_source_coords(in_size, out_size), np.float32(0.0))
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - lo.astype(np.float32), np.float32(0.0), np.float32(1.0))
    hi = np.minimum(lo + 1, in_size - 1)
    w = np.stack([np.float32(1.0) - lam, lam], axis=1).astype(np.float64)
    return np.stack([lo, hi], axis=1), w


def _torch_bicubic_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``F.interpolate(mode='bicubic', align_corners=False)``: Keys a = -0.75, 4 taps, border replicated."""
    src = _torch_source_coords(in_size, out_size)
    base = np.floor(src)
    t = (src - base).astype(np.float64)
    offsets = np.arange(-1, 3)
    idx = np.clip(base.astype(np.int64)[:, None] + offsets[None, :], 0, in_size - 1)
    w = _keys_cubic(-0.75)(t[:, None] - offsets[None, :])
    return idx, w


def _torch_antialiased_taps(in_size: int, out_size: int, filter_name: str) -> tuple[np.ndarray, np.ndarray]:
    """torch's antialiased interpolate on float32: Pillow's windows, with the centre and the filter
    argument rounded to float32 where torch's kernel stores them (the rest in float64)."""
    fn, base_support = _FILTERS[filter_name]
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    support = f32(base_support) * scale if scale >= 1.0 else f32(base_support)
    invscale = f32(1.0) / scale if scale >= 1.0 else f32(1.0)
    ksize = int(math.ceil(support)) * 2 + 1
    centers = (np.float64(scale) * (np.arange(out_size) + 0.5)).astype(f32)
    xmin = np.maximum(np.trunc((centers - support).astype(np.float64) + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc((centers + support).astype(np.float64) + 0.5).astype(np.int64), in_size) - xmin
    j = np.arange(ksize, dtype=np.int64)
    offset = ((j[None, :] + xmin[:, None]).astype(f32) - centers[:, None]).astype(np.float64) + 0.5
    arg = (offset * np.float64(invscale)).astype(f32).astype(np.float64)
    w = np.where(j[None, :] < xmax[:, None], fn(arg), 0.0).astype(f32)
    total = np.cumsum(w, axis=1, dtype=f32)[:, -1:]  # torch sums the weights in float32, in order
    w = np.divide(w, total, out=w, where=total != 0).astype(np.float64)
    idx = np.minimum(xmin[:, None] + j[None, :], in_size - 1)
    return idx, w


_KERNELS: Mapping[tuple[str, str, bool], Any] = MappingProxyType({
    ("pil", "bilinear", True): lambda i, o: _antialiased_taps(i, o, "bilinear"),
    ("pil", "bicubic", True): lambda i, o: _antialiased_taps(i, o, "bicubic"),
    ("torch", "bilinear", True): lambda i, o: _torch_antialiased_taps(i, o, "bilinear"),
    ("torch", "bicubic", True): lambda i, o: _torch_antialiased_taps(i, o, "bicubic"),
    ("torch", "bilinear", False): _torch_bilinear_taps,
    ("torch", "bicubic", False): _torch_bicubic_taps,
    ("tf1", "bilinear", False): _tf1_bilinear_taps,
})


@lru_cache(maxsize=256)
def _cached_taps(kernel: tuple[str, str, bool], in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    idx, w = _KERNELS[kernel](in_size, out_size)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    idx.flags.writeable = False
    w.flags.writeable = False
    return idx, w


def taps(policy: ResizePolicy, in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (index, weight), each (out_size, k): output ``i`` is ``sum_j weight[i, j] * x[index[i, j]]``.

    Weights are float64, or Pillow's fixed-point integers (int64) when the policy runs Pillow's uint8 path.
    """
    kernel = (policy.library, policy.filter, policy.antialias)
    if policy.integer_path:
        return _cached_fixed_taps(kernel, int(in_size), int(out_size))
    return _cached_taps(kernel, int(in_size), int(out_size))


@lru_cache(maxsize=256)
def _cached_fixed_taps(kernel: tuple[str, str, bool], in_size: int,
                       out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's ``normalize_coeffs_8bpc``: weights rounded half away from zero to 22 fractional bits."""
    idx, w = _cached_taps(kernel, in_size, out_size)
    fixed = np.trunc(w * float(1 << PIL_PRECISION_BITS) + np.where(w < 0, -0.5, 0.5)).astype(np.int64)
    fixed.flags.writeable = False
    return idx, fixed


# ---------------------------------------------------------------------------------------------- resize


def _apply_taps(x: np.ndarray, idx: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """Returns the weighted sum of ``x`` gathered along ``axis`` at ``idx`` (float64 or int64)."""
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    acc = None
    for j in range(idx.shape[1]):
        term = np.take(x, idx[:, j], axis=axis) * w[:, j].reshape(shape)
        acc = term if acc is None else acc + term
    return acc


def _pil_uint8_pass(x: np.ndarray, idx: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    acc = _apply_taps(x, idx, w, axis) + (1 << (PIL_PRECISION_BITS - 1))
    return np.clip(acc >> PIL_PRECISION_BITS, 0, 255)


def check_size(size: Any) -> tuple[int, int]:
    """Returns ``size`` as a (height, width) pair of positive ints, or raises `InputError`."""
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"size must be (height, width), received {size!r}") from None
    if h < 1 or w < 1:
        raise InputError(f"size must be positive, received {size!r}")
    return h, w


@dataclass(frozen=True)
class Geometry:
    """Where a policy crops and what it resizes to, for one input size: ``pre_crop`` (a `Box` of the input,
    or None), then a resize to ``resize_to`` (h, w) (none when the size is already that), then
    ``post_crop`` (a `Box` of the resized image, or None)."""

    pre_crop: Box | None
    resize_to: tuple[int, int]
    post_crop: Box | None


def geometry(policy: ResizePolicy, in_hw: tuple[int, int], size: tuple[int, int]) -> Geometry:
    """Returns the crops and the resize that take an image of ``in_hw`` (h, w) to ``size`` (oh, ow) under
    ``policy``.

    * ``crop="none"``: the resize to ``size``, no crop.
    * ``crop="resize-then-center"`` (torchvision ``Resize(n)`` then ``CenterCrop(n)``: openai/CLIP's
      ``_transform``, clean-fid's ``img_preprocess_clip``): the aspect-keeping resize that covers ``size``,
      the binding side to its output size and the other to ``int(out * side / binding side)`` (torchvision's
      ``_compute_resized_output_size``: for a square output, the shorter side becomes ``n``), then the centred
      box at ``int(round((side - out) / 2.0))`` (torchvision's ``center_crop``: Python's round, halves to
      even).
    * ``crop="center-then-resize"`` (CMMD's ``_center_crop_and_resize``, google-research/google-research
      cmmd/io_util.py): the largest centred box of the output's aspect ratio (for a square output the
      largest square, ``min(h, w)``), at ``(side - box) // 2``, then the resize to ``size``.
    """
    (h, w), (oh, ow) = in_hw, check_size(size)
    if policy.crop == "none":
        return Geometry(None, (oh, ow), None)
    width_binds = ow * h >= oh * w  # scaling the width to ow leaves at least oh rows
    if policy.crop == "center-then-resize":
        bh, bw = (w * oh // ow, w) if width_binds else (h, h * ow // oh)
        box = None if (bh, bw) == (h, w) else ((h - bh) // 2, (w - bw) // 2, bh, bw)
        return Geometry(box, (oh, ow), None)
    rh, rw = (int(ow * h / w), ow) if width_binds else (oh, int(oh * w / h))
    post = None if (rh, rw) == (oh, ow) else (int(round((rh - oh) / 2.0)), int(round((rw - ow) / 2.0)), oh, ow)
    return Geometry(None, (rh, rw), post)


def crop(images: np.ndarray, box: Box) -> np.ndarray:
    """Returns the ``box`` (top, left, height, width) of NHWC ``images`` (a view)."""
    t, left, bh, bw = box
    return images[:, t:t + bh, left:left + bw]


def resize(images: np.ndarray, policy: ResizePolicy | str, size: tuple[int, int]) -> np.ndarray:
    """Returns ``images`` (NHWC, 0..255 scale) brought to ``size`` (h, w) exactly as the policy's library does:
    its crops (`geometry`) around `resample`. Returns float32 (a copy)."""
    policy = get_policy(policy) if isinstance(policy, str) else policy
    x = np.asarray(images)
    if x.ndim != 4:
        raise InputError(f"resize: expected NHWC images (4 dimensions), received shape {x.shape}")
    geo = geometry(policy, x.shape[1:3], size)
    if geo.pre_crop is not None:
        x = crop(x, geo.pre_crop)
    y = resample(x, policy, geo.resize_to)
    return np.array(crop(y, geo.post_crop)) if geo.post_crop is not None else y


def resample(images: np.ndarray, policy: ResizePolicy | str, size: tuple[int, int]) -> np.ndarray:
    """Returns ``images`` (NHWC, 0..255 scale) resized to ``size`` (h, w) exactly as the policy's library does,
    without the policy's crops.

    The numpy reference: float64 arithmetic with the library's own coordinates (equal to the library to
    1e-4 on the 0..255 scale), or Pillow's fixed-point uint8 arithmetic when the policy quantizes its
    output (bit-exact; non-integer input is first rounded to uint8 levels, which is all Pillow can take).
    Clipping applies when the policy clips. Input quantization is not applied here (see `quantize`).
    Returns float32; identity (a float32 copy) when the size already matches.
    """
    policy = get_policy(policy) if isinstance(policy, str) else policy
    out_h, out_w = check_size(size)
    x = np.asarray(images)
    if x.ndim != 4:
        raise InputError(f"resize: expected NHWC images (4 dimensions), received shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise InputError(f"resize: expected a real-valued array, received dtype {x.dtype}")
    _, in_h, in_w, _ = x.shape
    if (in_h, in_w) == (out_h, out_w):
        return np.array(x, dtype=np.float32)
    passes = [(1 if axis == "h" else 2, n_in, n_out)
              for axis, n_in, n_out in resize_plan(policy, (in_h, in_w), (out_h, out_w))]
    if policy.integer_path:
        y = np.clip(np.rint(x), 0, 255).astype(np.int64)
        for axis, n_in, n_out in passes:
            y = _pil_uint8_pass(y, *taps(policy, n_in, n_out), axis=axis)
        return y.astype(np.float32)
    y = x.astype(np.float64)
    for i, (axis, n_in, n_out) in enumerate(passes):
        y = _apply_taps(y, *taps(policy, n_in, n_out), axis=axis)
        if i == 0 and policy.library == "pil":  # Pillow stores the first pass as a float32 image
            y = y.astype(np.float32).astype(np.float64)
    if policy.quantize_output:
        y = np.rint(y)
    if policy.clip or policy.quantize_output:
        y = np.clip(y, 0.0, 255.0)
    return y.astype(np.float32)


def resize_plan(policy: ResizePolicy, in_hw: tuple[int, int],
                out_hw: tuple[int, int]) -> list[tuple[str, int, int]]:
    """Returns the separable passes, in the library's order, as ("h" | "w", in_size, out_size).

    A pass whose size does not change is left out (Pillow skips it; the other libraries' weights are
    the identity there).
    """
    (in_h, in_w), (out_h, out_w) = in_hw, out_hw
    passes = [("w", in_w, out_w), ("h", in_h, out_h)]
    if policy.library == "pil" and _pil_vertical_first(in_h, in_w, out_h, out_w):
        passes.reverse()
    return [p for p in passes if p[1] != p[2]]


def resize_matrix(policy: ResizePolicy, in_size: int, out_size: int) -> np.ndarray:
    """Returns the dense (out_size, in_size) float64 matrix of one pass: ``y = M @ x`` along that axis.

    For Pillow's uint8 path the entries are its fixed-point integers (exact in float64): a pass is then
    ``clip(floor((M @ x + 2**21) / 2**22), 0, 255)``, exact in float64 arithmetic for uint8 ``x``.
    """
    kernel = (policy.library, policy.filter, policy.antialias)
    return _cached_matrix(kernel, int(in_size), int(out_size), policy.integer_path)


#: float32 sums of this many 0..255 terms stay within 1e-4 of the reference unshifted (measured: 15 taps,
#: 1024 -> 299 bicubic, 4.6e-5); beyond it (299 -> 28 bicubic, 45 taps: 1.2e-4) a pass needs x - 128.
MAX_UNSHIFTED_TAPS = 16


def shifted_passes(policy: ResizePolicy, passes: list[tuple[str, int, int]], in_hw: tuple[int, int]) -> list[bool]:
    """For the float32 fast paths: whether each pass runs on values shifted by -128 (each pass's weights
    sum to 1, so resampling x - 128 and adding 128 back is the same resize, with half the magnitude).

    A pass that sums more than `MAX_UNSHIFTED_TAPS` taps is shifted (a copy of its input, or in place on an
    intermediate). Otherwise the first of two passes runs unshifted, and the last runs shifted only where
    adding 128 back is cheap: when its output is smaller than its input (a 40-shape check found the same
    largest error, 7.6e-5 at 1024 x 64 -> 299, whether or not an upscale's first pass was shifted).
    """
    dims = {"h": in_hw[0], "w": in_hw[1]}
    out = []
    for i, (axis, n_in, n_out) in enumerate(passes):
        size_in = dims["h"] * dims["w"]
        dims[axis] = n_out
        size_out = dims["h"] * dims["w"]
        if taps(policy, n_in, n_out)[0].shape[1] > MAX_UNSHIFTED_TAPS:
            out.append(True)
        elif i == 0 and len(passes) > 1:
            out.append(False)
        else:
            out.append(size_out < size_in)
    return out


#: Outputs per block of a banded pass (`resize_blocks`); 8..48 measured on a 2-core CPU, 32..1024 -> 299:
#: 16 was best or within 5% of the best everywhere.
BLOCK = 16

Block = tuple[int, int, int, int, np.ndarray]


def resize_blocks(policy: ResizePolicy, in_size: int, out_size: int, block: int = BLOCK) -> tuple[Block, ...]:
    """Returns one pass's matrix (`resize_matrix`) cut into bands: ``(o0, o1, i0, i1, m[o0:o1, i0:i1])`` for
    each run of ``block`` outputs and the inputs they read; every other entry of those rows is zero.

    A pass as per-band products reads each input a few times instead of multiplying by the whole dense
    matrix: 1024 -> 299 bicubic does ~15x fewer multiply-adds (each output reads 14 inputs, not 1024).
    """
    kernel = (policy.library, policy.filter, policy.antialias)
    return _cached_blocks(kernel, int(in_size), int(out_size), policy.integer_path, int(block))


@lru_cache(maxsize=256)
def _cached_blocks(kernel: tuple[str, str, bool], in_size: int, out_size: int, fixed: bool,
                   block: int) -> tuple[Block, ...]:
    m = _cached_matrix(kernel, in_size, out_size, fixed)
    out = []
    for o0 in range(0, out_size, block):
        o1 = min(o0 + block, out_size)
        used = np.flatnonzero(m[o0:o1].any(axis=0))
        i0, i1 = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)
        band = m[o0:o1, i0:i1].copy()
        band.flags.writeable = False
        out.append((o0, o1, i0, i1, band))
    return tuple(out)


@lru_cache(maxsize=64)
def interleaved_bands(policy: ResizePolicy, in_size: int, out_size: int,
                      channels: int) -> tuple[tuple[int, int, np.ndarray], ...]:
    """Returns `resize_blocks` for the width of channels-last images, whose rows hold their (w, c) values
    side by side: per band the columns ``[c0, c1)`` it reads of the (N*H, W*C) matrix and the float64
    matrix ``kron(band, I_c).T`` to multiply them by, a plain 2-D product with no gather or transpose
    (3x the multiply-adds of the taps for RGB, yet the fastest form on CPU for tf and jax)."""
    eye = np.eye(channels)
    return tuple((i0 * channels, i1 * channels, np.kron(m, eye).T)
                 for _o0, _o1, i0, i1, m in resize_blocks(policy, in_size, out_size))


def band_table(policy: ResizePolicy, in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns the bands of `resize_blocks` padded to one width ``k``, for a gather and a batched product:
    ``index`` (nb, k) and ``weight`` (nb, k, BLOCK); band ``b``'s outputs are ``weight[b].T @ x[index[b]]``,
    and the first ``out_size`` of the nb * BLOCK results are the pass's output (float64 weights)."""
    blocks = resize_blocks(policy, in_size, out_size)
    k = max(i1 - i0 for _o0, _o1, i0, i1, _m in blocks)
    starts = np.array([min(i0, in_size - k) for _o0, _o1, i0, _i1, _m in blocks])
    weight = np.zeros((len(blocks), k, BLOCK))
    for b, (o0, o1, i0, i1, m) in enumerate(blocks):
        weight[b, i0 - starts[b]:i1 - starts[b], :o1 - o0] = m.T
    return starts[:, None] + np.arange(k)[None, :], weight


@lru_cache(maxsize=256)
def _cached_matrix(kernel: tuple[str, str, bool], in_size: int, out_size: int, fixed: bool) -> np.ndarray:
    idx, w = (_cached_fixed_taps if fixed else _cached_taps)(kernel, in_size, out_size)
    m = np.zeros((out_size, in_size), dtype=np.float64)
    np.add.at(m, (np.repeat(np.arange(out_size), idx.shape[1]), idx.ravel()), w.ravel())
    m.flags.writeable = False
    return m


@lru_cache(maxsize=1)
def _pillow_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(p) for p in version("pillow").split(".")[:2] if p.isdigit())


def _pil_vertical_first(in_h: int, in_w: int, out_h: int, out_w: int) -> bool:
    """Whether the installed Pillow runs the vertical pass first; the order decides the intermediate
    rounding (uint8 after each pass, float32 on mode ``F``), so it is reproduced.

    Measured on every release from 11.3.0 to 13.0.0 (modes L, RGB and F, bilinear and bicubic, tall
    images around h = 100 w, ordinary up- and downscales, the 2x boundary itself), bit-exact:

    ==============  ===============================================================================
    Pillow          vertical pass first when
    ==============  ===============================================================================
    <= 12.1.1       never
    12.2.0, 12.3.0  ``in_h > 100 * in_w`` and ``out_h < in_h`` (``Image.resize`` calls the C resize
                    twice, height then width; python-pillow/Pillow#9524)
    >= 13.0.0       ``out_h < in_h`` and ``in_h - out_h > 2 * (in_w - out_w)``, in C
                    (python-pillow/Pillow#9549, which replaced #9524)
    ==============  ===============================================================================
    """
    if out_h >= in_h:
        return False
    version = _pillow_version()
    if version >= PIL_VERTICAL_FIRST_SINCE:
        return in_h - out_h > 2 * (in_w - out_w)
    if version >= PIL_TALL_VERTICAL_FIRST_SINCE:
        return in_h > 100 * in_w
    return False


def quantize(images: np.ndarray) -> np.ndarray:
    """Returns float32 ``images`` on the 0..255 scale rounded to the nearest uint8 level and clamped.

    This is what saving a float image as an 8-bit PNG does (``np.rint``: halves go to even); a policy with
    ``quantize_input`` applies it to float input before resizing (clean-fid's argument).
    """
    return np.clip(np.rint(np.asarray(images, dtype=np.float32)), 0.0, 255.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------- registry

_PILLOW_DOC = "Image.resize on float32 (mode F) per channel"

_POLICIES: dict[str, ResizePolicy] = {}


def register_policy(policy: ResizePolicy, *, replace: bool = False) -> ResizePolicy:
    """Returns ``policy`` after adding it to the registry under its name."""
    if policy.name in _POLICIES and not replace and _POLICIES[policy.name] != policy:
        raise InputError(f"resize policy {policy.name!r} is already registered; pass replace=True")
    _POLICIES[policy.name] = policy
    return policy


def get_policy(name: str | ResizePolicy) -> ResizePolicy:
    """Returns the registered policy called ``name`` (a policy passes through unchanged)."""
    if isinstance(name, ResizePolicy):
        return name
    try:
        return _POLICIES[name]
    except KeyError:
        raise InputError(f"unknown resize policy {name!r}; available: {', '.join(sorted(_POLICIES))}") from None


def available_policies() -> list[str]:
    """Returns the names of all registered resize policies, sorted."""
    return sorted(_POLICIES)


#: The registry, read-only: policy name -> `ResizePolicy`.
POLICIES: Mapping[str, ResizePolicy] = MappingProxyType(_POLICIES)

_IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

register_policy(ResizePolicy(
    name="clean", library="pil", filter="bicubic", antialias=True, quantize_input=True,
    quantize_output=False, clip=True, mean=(128.0,) * 3, std=(128.0,) * 3,
    description="clean-fid's 'clean' mode (Parmar et al., CVPR 2022): float input is first rounded to "
                "uint8 levels, as a saved PNG would be; each channel is resized as a float32 image "
                "(Pillow mode F) with Pillow's antialiased bicubic (Keys a = -0.5, support 2 x the "
                "downscale factor), clamped to [0, 255], then (x - 128) / 128 as in the 2015 Inception "
                "graph."))

register_policy(ResizePolicy(
    name="legacy-tensorflow", library="tf1", filter="bilinear", antialias=False, quantize_input=True,
    quantize_output=False, mean=(128.0,) * 3, std=(128.0,) * 3,
    description="The original TF1 FID graph (Heusel et al., NeurIPS 2017, TTUR) as torch-fidelity "
                "reproduces it: uint8 input, tf.compat.v1.image.resize_bilinear(align_corners=False, "
                "half_pixel_centers=False) in float32 (source pixel = i * in / out, no antialiasing), "
                "then (x - 128) / 128."))

register_policy(ResizePolicy(
    name="legacy-pytorch", library="torch", filter="bilinear", antialias=False, quantize_input=False,
    quantize_output=False, mean=(127.5,) * 3, std=(127.5,) * 3,
    description="pytorch-fid (Seitzer): images on [0, 1] (float input used as is), "
                "F.interpolate(mode='bilinear', align_corners=False) to 299 x 299 (half-pixel centres, "
                "no antialiasing), then 2x - 1, i.e. (x - 127.5) / 127.5 on the 0..255 scale."))

register_policy(ResizePolicy(
    name="pil-bilinear", library="pil", filter="bilinear", antialias=True, quantize_input=True,
    quantize_output=True, mean=(127.5,) * 3, std=(127.5,) * 3,
    description="The PyTorch-Ignite FID/IS tutorial: each image as an 8-bit PIL image, "
                "Image.resize(BILINEAR) (antialiased triangle filter, Pillow's fixed-point uint8 "
                "arithmetic, so the result is uint8), then ToTensor and (x - 127.5) / 127.5."))

register_policy(ResizePolicy(
    name="torchvision", library="torch", filter="bilinear", antialias=True, quantize_input=False,
    quantize_output=False, mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    description="torchvision's Inception v3 (IMAGENET1K_V1): torchvision.transforms.functional.resize "
                "on tensors (F.interpolate bilinear with antialias=True, the same filter as Pillow) "
                "straight to the input size, without the classification crop (FID needs the whole "
                "image), then ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) x 255."))

register_policy(ResizePolicy(
    name="mnist", library="pil", filter="bilinear", antialias=True, quantize_input=False,
    quantize_output=False, mean=(0.1307 * 255,) * 3, std=(0.3081 * 255,) * 3,
    description="fidkit's MNIST classifier (28 x 28 input): Pillow's antialiased bilinear on float32 per "
                "channel (Image.resize BILINEAR, mode F), no quantization, then the MNIST training "
                "mean/std 0.1307/0.3081 (x 255) on every channel; the graph converts to luminance with "
                "ITU-R 601-2 weights (0.299, 0.587, 0.114), which sum to 1, so normalising first is the "
                "same."))

register_policy(ResizePolicy(
    name="dgm-eval", library="pil", filter="bicubic", antialias=True, quantize_input=True,
    quantize_output=True, mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    description="dgm-eval's DINOv2 transform (Stein et al., NeurIPS 2023; layer6ai-labs/dgm-eval "
                "dgm_eval/models/dinov2.py), which defines FD_DINOv2, and EDM2's resize_mode='pil' that "
                "'matches the original dgm-eval codebase exactly': each image as an 8-bit RGB PIL image, "
                "torchvision Resize((224, 224), BICUBIC) = Image.resize(BICUBIC) (antialiased Keys cubic "
                "a = -0.5, Pillow's fixed-point uint8 arithmetic, so the result is uint8), then ToTensor "
                "and ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) x 255."))

register_policy(ResizePolicy(
    name="edm2", library="torch", filter="bicubic", antialias=True, quantize_input=True,
    quantize_output=False, mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    description="EDM2's DINOv2 detector, default resize_mode='torch' (NVlabs/edm2 calculate_metrics.py, "
                "'yields almost the same results' as dgm-eval): uint8 images as float32 on 0..255, "
                "F.interpolate(size=(224, 224), mode='bicubic', antialias=True) (Pillow's filter, a = -0.5, "
                "in float32, not clipped, not rounded), then / 255 and ImageNet mean/std."))

register_policy(ResizePolicy(
    name="torchmetrics", library="torch", filter="bilinear", antialias=True, quantize_input=True,
    quantize_output=False, mean=(128.0,) * 3, std=(128.0,) * 3,
    description="torchmetrics' FID/KID/IS default since its antialias argument (Lightning-AI/torchmetrics#3130): "
                "uint8 input, F.interpolate(mode='bilinear', align_corners=False, antialias=True) to "
                "299 x 299 on the 0..255 scale, then (x - 128) / 128 (torchmetrics/image/fid.py, "
                "NoTrainInceptionV3). Float input here is rounded to uint8 levels; torchmetrics' "
                "normalize=True truncates it ((x * 255).byte()), so pass uint8 images to compare."))

#: OpenAI CLIP's normalisation (openai/CLIP clip.py ``_transform``), on the 0..255 scale.
_CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
_CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)

register_policy(ResizePolicy(
    name="clip", library="pil", filter="bicubic", antialias=True, quantize_input=True,
    quantize_output=True, mean=_CLIP_MEAN, std=_CLIP_STD, crop="resize-then-center",
    description="CLIP's own preprocessing (openai/CLIP clip.py _transform; open_clip's transform for the "
                "OpenAI weights) and clean-fid's CLIP-FID (cleanfid/clip_features.py img_preprocess_clip): "
                "each image as an 8-bit RGB PIL image, torchvision Resize(n, BICUBIC) = Image.resize(BICUBIC) "
                "with the shorter side to n and the longer to int(n * long / short) (Pillow's antialiased "
                "Keys cubic a = -0.5 in its fixed-point uint8 arithmetic, so the result is uint8), "
                "CenterCrop(n) at int(round((side - n) / 2)), then ToTensor and CLIP's mean/std "
                "(0.48145466, 0.4578275, 0.40821073) / (0.26862954, 0.26130258, 0.27577711) x 255. Float "
                "input is rounded to uint8 levels (clean-fid's astype(np.uint8) truncates it: pass uint8 "
                "images to compare)."))

register_policy(ResizePolicy(
    name="cmmd", library="pil", filter="bicubic", antialias=True, quantize_input=True,
    quantize_output=True, mean=_CLIP_MEAN, std=_CLIP_STD, crop="center-then-resize",
    description="CMMD's image reader (Jayasumana et al., CVPR 2024; google-research/google-research "
                "cmmd/io_util.py _center_crop_and_resize, the same in the PyTorch port sayakpaul/cmmd-pytorch): "
                "the largest centred square of the 8-bit PIL image, cropped at ((h - l) // 2, (w - l) // 2), "
                "then Image.resize((336, 336), BICUBIC) (Pillow's antialiased Keys cubic a = -0.5 in its "
                "fixed-point uint8 arithmetic, so the result is uint8), / 255, and CLIP's mean/std; the "
                "embedding's own bicubic resize to 336 (jax.image.resize, or F.interpolate in the port) is "
                "then the identity. Unlike the 'clip' policy it crops before resizing, with floor offsets."))

register_policy(ResizePolicy(
    name="vgg16-tf1", library="tf1", filter="bilinear", antialias=False, quantize_input=True,
    quantize_output=False, mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
    description="The VGG16 feature extractors of precision/recall: NVIDIA's vgg16.pt in StyleGAN2-ADA / "
                "StyleGAN3 (metrics/precision_recall.py, resize_images=True; F.affine_grid + grid_sample with a "
                "shifted grid, as genforce's models/perceptual_model.py align_tf_resize re-implements the file) "
                "and torch-fidelity's 'vgg16' (feature_extractor_vgg16.py, interpolate_bilinear_2d_like_"
                "tensorflow1x): uint8 images as float on 0..255, resized to 224 x 224 with TF1 resize_bilinear "
                "semantics (source pixel = i * in / out, no half-pixel centres, no antialiasing), not rounded, "
                "then ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) x 255."))
