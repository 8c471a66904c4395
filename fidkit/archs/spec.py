"""The vocabulary in which fidkit describes a network once, for torch, TensorFlow and JAX to run alike.

A `Graph` is a topologically ordered tuple of `Node`s. Parameters are not part of the graph: a node named
``n`` reads the arrays ``f"{n}.{param}"`` from the canonical weights file (an ``.npz`` of float32 arrays).
Layouts are those of PyTorch: conv kernels (out, in, kh, kw), dense weights (out, in), and ``flatten``
orders features as (C, H, W), so weights trained in torch load unchanged in every runtime.

Ops and their attributes:

=================  ==========================================================  ==========================
op                 attrs                                                        params
=================  ==========================================================  ==========================
input              channels                                                     -
channel_affine     scale (C,), shift (C,)   y[c] = x[c] * scale[c] + shift[c]    -
conv2d             in_channels, out_channels, kernel, stride, padding, bias     weight, bias (if bias)
batchnorm          channels, eps  (inference: running statistics)               weight, bias,
                                                                                running_mean, running_var
relu               -                                                            -
maxpool2d          kernel, stride, padding  (padding counts as -inf)            -
avgpool2d          kernel, stride, padding, count_include_pad                   -
concat             - (along channels, in input order)                           -
global_avgpool     - (N, C, H, W) -> (N, C)                                     -
flatten            - (N, C, H, W) -> (N, C*H*W) in C, H, W order                -
flatten_hwc        channels: (N, C, H, W) -> (N, H*W*channels) in H, W, C       -
                   order, of the first ``channels`` channels (TensorFlow's
                   NHWC reshape of ``x[..., :channels]``)
dense              in_features, out_features, bias                              weight, bias (if bias)
=================  ==========================================================  ==========================

``kernel`` and ``stride`` are (h, w); ``padding`` is ((top, bottom), (left, right)) in pixels.

Token ops (vision transformers): activations are (N, T, D), T tokens of width D, in the token order of
the reference implementation; ``linear`` and the elementwise ops act on the last axis.

=================  ==========================================================  ==========================
op                 attrs                                                        params
=================  ==========================================================  ==========================
tokens             - (N, C, H, W) -> (N, H*W, C), row-major (a patch grid)      -
insert_tokens      at, count, dim: learned tokens inserted before token ``at``   value (1, count, dim)
pos_embed          dim, prefix, grid, table_grid, offset, antialias (below)     value (1, prefix + M*M, dim)
layernorm          dim, eps  (over the last axis, biased variance)              weight, bias
linear             in_features, out_features, bias  (on the last axis)          weight, bias (if bias)
attention          dim, heads: packed (N, T, 3*dim) q|k|v -> (N, T, dim)        -
gelu               approximate: "none" (erf) or "tanh"                          -
quick_gelu         - x * sigmoid(1.702 x) (CLIP)                                -
swiglu             - (..., 2H) -> silu(x[..., :H]) * x[..., H:]                 -
layerscale         dim  y = x * gamma                                           gamma (dim,)
add                - the sum of its two inputs                                  -
select_token       index  (N, T, D) -> (N, D)                                   -
l2_normalize       - x / ||x||_2 over the last axis (no epsilon: CMMD, CLIP)    -
=================  ==========================================================  ==========================

``attention`` splits the last axis as (3, heads, dim // heads) (PyTorch's packed qkv layout), computes
``softmax(q k^T / sqrt(dim // heads)) v`` per head over all tokens and concatenates the heads.
``pos_embed`` adds a learned table to the tokens: its first ``prefix`` rows are added unchanged to the
first ``prefix`` tokens (the class token), the other M x M rows, a grid (``table_grid``), are resampled
to the input's patch grid ``grid`` (gh, gw) by `pos_embed_matrix` per axis, as DINOv2's
``interpolate_pos_encoding`` does (torch bicubic, ``offset`` added to the output size to form the scale
factor, ``antialias``), and added to the remaining tokens; the table is used as is when ``grid`` is
``table_grid``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np

OPS = frozenset(
    {"input", "channel_affine", "conv2d", "batchnorm", "relu", "maxpool2d", "avgpool2d",
     "concat", "global_avgpool", "flatten", "dense"}
) | frozenset(
    {"tokens", "insert_tokens", "pos_embed", "layernorm", "linear", "attention", "gelu", "quick_gelu",
     "swiglu", "layerscale", "add", "select_token", "l2_normalize"}
) | frozenset({"flatten_hwc"})  # sFID's spatial features (fidkit.archs.inception.SPATIAL_NODE)

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]


@dataclass(frozen=True)
class Node:
    """One operation of a graph: its op, unique name, input node names and attributes."""

    op: str
    name: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"node {self.name!r}: unknown op {self.op!r}; expected one of {sorted(OPS)}")
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))


@dataclass(frozen=True)
class Graph:
    """A network: nodes in topological order and the named outputs ('features', 'logits')."""

    name: str
    nodes: tuple[Node, ...]
    outputs: Mapping[str, str]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Returns the name and shape of every parameter array the graph reads."""
        shapes: dict[str, tuple[int, ...]] = {}
        for node in self.nodes:
            a = node.attrs
            if node.op == "conv2d":
                shapes[f"{node.name}.weight"] = (a["out_channels"], a["in_channels"], *a["kernel"])
                if a["bias"]:
                    shapes[f"{node.name}.bias"] = (a["out_channels"],)
            elif node.op == "batchnorm":
                for p in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"{node.name}.{p}"] = (a["channels"],)
            elif node.op == "dense":
                shapes[f"{node.name}.weight"] = (a["out_features"], a["in_features"])
                if a["bias"]:
                    shapes[f"{node.name}.bias"] = (a["out_features"],)
            else:
                shapes.update(_token_param_shapes(node))
        return shapes


def _token_param_shapes(node: Node) -> dict[str, tuple[int, ...]]:
    """Returns the parameter shapes of a token op (none for the parameter-free ones)."""
    a, n = node.attrs, node.name
    if node.op == "insert_tokens":
        return {f"{n}.value": (1, a["count"], a["dim"])}
    if node.op == "pos_embed":
        m_h, m_w = a["table_grid"]
        return {f"{n}.value": (1, a["prefix"] + m_h * m_w, a["dim"])}
    if node.op == "layernorm":
        return {f"{n}.weight": (a["dim"],), f"{n}.bias": (a["dim"],)}
    if node.op == "linear":
        out = {f"{n}.weight": (a["out_features"], a["in_features"])}
        if a["bias"]:
            out[f"{n}.bias"] = (a["out_features"],)
        return out
    if node.op == "layerscale":
        return {f"{n}.gamma": (a["dim"],)}
    return {}


def _keys_cubic(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@lru_cache(maxsize=64)
def pos_embed_matrix(table: int, out: int, offset: float, antialias: bool) -> np.ndarray:
    """Returns the (out, table) float64 matrix resampling one axis of a position-embedding grid.

    It is ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`` on that axis as
    DINOv2's ``interpolate_pos_encoding`` calls it: with ``offset`` > 0 (the released models without
    registers: 0.1) the call passes ``scale_factor = (out + offset) / table``, so torch maps output pixel
    ``i`` to source ``(i + 0.5) / scale_factor - 0.5`` (the scale in float32, as torch's CPU kernel) and
    samples the Keys cubic (a = -0.75) at it, borders replicated; with ``offset`` 0 it passes
    ``size=out`` and ``antialias`` (the models with registers: True, the Pillow-like filter of
    `fidkit.resize`'s ``torch`` bicubic). Raises ValueError for an offset with antialiasing (no
    released checkpoint uses it).
    """
    if table == out and offset == 0:
        return np.eye(out)
    if offset == 0:
        from ..resize import ResizePolicy, resize_matrix

        policy = ResizePolicy(name="pos-embed", library="torch", filter="bicubic", antialias=antialias,
                              quantize_input=False, quantize_output=False, mean=(0.0,) * 3, std=(1.0,) * 3,
                              description="DINOv2 position-embedding interpolation")
        return np.array(resize_matrix(policy, table, out))
    if antialias:
        raise ValueError("pos_embed: an interpolation offset with antialiasing is not implemented")
    scale_factor = float(out + offset) / table
    if math.floor(table * scale_factor) != out:
        raise ValueError(f"pos_embed: scale factor {scale_factor} gives {math.floor(table * scale_factor)} "
                         f"outputs, not {out}")
    scale = np.float32(1.0 / scale_factor)
    dst = np.arange(out, dtype=np.float64) + 0.5
    src = (np.float64(scale) * dst - 0.5).astype(np.float32)
    base = np.minimum(np.floor(src), table - 1)
    t = np.clip(src - base.astype(np.float32), 0.0, 1.0).astype(np.float64)
    offsets = np.arange(-1, 3)
    idx = np.clip(base.astype(np.int64)[:, None] + offsets[None, :], 0, table - 1)
    w = _keys_cubic(t[:, None] - offsets[None, :], -0.75)
    m = np.zeros((out, table))
    np.add.at(m, (np.repeat(np.arange(out), 4), idx.ravel()), w.ravel())
    return m


def pos_embed_matrices(attrs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Returns the (gh, M) and (gw, M) float64 matrices of a ``pos_embed`` node: the resampled table is
    ``A_h @ grid @ A_w^T`` on every channel (identity matrices when the grids are equal)."""
    (gh, gw), (mh, mw) = attrs["grid"], attrs["table_grid"]
    if (gh, gw) == (mh, mw):
        return np.eye(gh), np.eye(gw)
    off, aa = float(attrs["offset"]), bool(attrs["antialias"])
    return pos_embed_matrix(mh, gh, off, aa), pos_embed_matrix(mw, gw, off, aa)


def same_padding(kernel: Pair) -> Padding:
    """Returns the stride-1 'SAME' padding of an odd kernel: symmetric, kernel // 2 on each side."""
    kh, kw = kernel
    return ((kh // 2, kh // 2), (kw // 2, kw // 2))


class GraphBuilder:
    """Appends nodes in order; each method returns the new node's name for use as a later input."""

    def __init__(self, name: str, channels: int) -> None:
        self.name = name
        self._nodes: list[Node] = [Node("input", "input", (), {"channels": channels})]
        self._names = {"input"}

    def _add(self, op: str, name: str, inputs: tuple[str, ...], **attrs: Any) -> str:
        if name in self._names:
            raise ValueError(f"graph {self.name!r}: duplicate node name {name!r}")
        for i in inputs:
            if i not in self._names:
                raise ValueError(f"graph {self.name!r}: node {name!r} reads unknown node {i!r}")
        self._nodes.append(Node(op, name, inputs, attrs))
        self._names.add(name)
        return name

    def channel_affine(self, name: str, x: str, scale: tuple[float, ...], shift: tuple[float, ...]) -> str:
        """Returns ``name`` after adding a ``channel_affine`` node (semantics: the op table above)."""
        return self._add("channel_affine", name, (x,), scale=tuple(scale), shift=tuple(shift))

    def conv2d(self, name: str, x: str, in_channels: int, out_channels: int, kernel: Pair,
               stride: Pair = (1, 1), padding: Padding = ((0, 0), (0, 0)), bias: bool = False) -> str:
        """Returns ``name`` after adding a ``conv2d`` node (semantics: the op table above)."""
        return self._add("conv2d", name, (x,), in_channels=in_channels, out_channels=out_channels,
                         kernel=tuple(kernel), stride=tuple(stride), padding=padding, bias=bias)

    def batchnorm(self, name: str, x: str, channels: int, eps: float) -> str:
        """Returns ``name`` after adding a ``batchnorm`` node (semantics: the op table above)."""
        return self._add("batchnorm", name, (x,), channels=channels, eps=eps)

    def relu(self, name: str, x: str) -> str:
        """Returns ``name`` after adding a ``relu`` node (semantics: the op table above)."""
        return self._add("relu", name, (x,))

    def maxpool2d(self, name: str, x: str, kernel: Pair, stride: Pair,
                  padding: Padding = ((0, 0), (0, 0))) -> str:
        """Returns ``name`` after adding a ``maxpool2d`` node (semantics: the op table above)."""
        return self._add("maxpool2d", name, (x,), kernel=tuple(kernel), stride=tuple(stride), padding=padding)

    def avgpool2d(self, name: str, x: str, kernel: Pair, stride: Pair,
                  padding: Padding = ((0, 0), (0, 0)), count_include_pad: bool = False) -> str:
        """Returns ``name`` after adding a ``avgpool2d`` node (semantics: the op table above)."""
        return self._add("avgpool2d", name, (x,), kernel=tuple(kernel), stride=tuple(stride),
                         padding=padding, count_include_pad=count_include_pad)

    def concat(self, name: str, xs: list[str]) -> str:
        """Returns ``name`` after adding a ``concat`` node (semantics: the op table above)."""
        return self._add("concat", name, tuple(xs))

    def global_avgpool(self, name: str, x: str) -> str:
        """Returns ``name`` after adding a ``global_avgpool`` node (semantics: the op table above)."""
        return self._add("global_avgpool", name, (x,))

    def flatten(self, name: str, x: str) -> str:
        """Returns ``name`` after adding a ``flatten`` node (semantics: the op table above)."""
        return self._add("flatten", name, (x,))

    def flatten_hwc(self, name: str, x: str, channels: int) -> str:
        """Returns ``name`` after adding a ``flatten_hwc`` node (semantics: the op table above)."""
        return self._add("flatten_hwc", name, (x,), channels=int(channels))

    def dense(self, name: str, x: str, in_features: int, out_features: int, bias: bool = True) -> str:
        """Returns ``name`` after adding a ``dense`` node (semantics: the op table above)."""
        return self._add("dense", name, (x,), in_features=in_features, out_features=out_features, bias=bias)

    def tokens(self, name: str, x: str) -> str:
        """Returns ``name`` after adding a ``tokens`` node (semantics: the op table above)."""
        return self._add("tokens", name, (x,))

    def insert_tokens(self, name: str, x: str, at: int, count: int, dim: int) -> str:
        """Returns ``name`` after adding a ``insert_tokens`` node (semantics: the op table above)."""
        return self._add("insert_tokens", name, (x,), at=at, count=count, dim=dim)

    def pos_embed(self, name: str, x: str, dim: int, grid: Pair, table_grid: Pair, prefix: int = 1,
                  offset: float = 0.0, antialias: bool = False) -> str:
        """Returns ``name`` after adding a ``pos_embed`` node (semantics: the op table above)."""
        return self._add("pos_embed", name, (x,), dim=dim, prefix=prefix, grid=tuple(grid),
                         table_grid=tuple(table_grid), offset=float(offset), antialias=bool(antialias))

    def layernorm(self, name: str, x: str, dim: int, eps: float) -> str:
        """Returns ``name`` after adding a ``layernorm`` node (semantics: the op table above)."""
        return self._add("layernorm", name, (x,), dim=dim, eps=eps)

    def linear(self, name: str, x: str, in_features: int, out_features: int, bias: bool = True) -> str:
        """Returns ``name`` after adding a ``linear`` node (semantics: the op table above)."""
        return self._add("linear", name, (x,), in_features=in_features, out_features=out_features, bias=bias)

    def attention(self, name: str, qkv: str, dim: int, heads: int) -> str:
        """Returns ``name`` after adding a ``attention`` node (semantics: the op table above)."""
        if dim % heads:
            raise ValueError(f"graph {self.name!r}: attention {name!r}: dim {dim} is not a multiple of "
                             f"{heads} heads")
        return self._add("attention", name, (qkv,), dim=dim, heads=heads)

    def gelu(self, name: str, x: str, approximate: str = "none") -> str:
        """Returns ``name`` after adding a ``gelu`` node (semantics: the op table above)."""
        if approximate not in ("none", "tanh"):
            raise ValueError(f"graph {self.name!r}: gelu {name!r}: approximate must be 'none' or 'tanh'")
        return self._add("gelu", name, (x,), approximate=approximate)

    def quick_gelu(self, name: str, x: str) -> str:
        """Returns ``name`` after adding a ``quick_gelu`` node (semantics: the op table above)."""
        return self._add("quick_gelu", name, (x,))

    def swiglu(self, name: str, x: str) -> str:
        """Returns ``name`` after adding a ``swiglu`` node (semantics: the op table above)."""
        return self._add("swiglu", name, (x,))

    def layerscale(self, name: str, x: str, dim: int) -> str:
        """Returns ``name`` after adding a ``layerscale`` node (semantics: the op table above)."""
        return self._add("layerscale", name, (x,), dim=dim)

    def add(self, name: str, x: str, y: str) -> str:
        """Returns ``name`` after adding a ``add`` node (semantics: the op table above)."""
        return self._add("add", name, (x, y))

    def select_token(self, name: str, x: str, index: int = 0) -> str:
        """Returns ``name`` after adding a ``select_token`` node (semantics: the op table above)."""
        return self._add("select_token", name, (x,), index=index)

    def l2_normalize(self, name: str, x: str) -> str:
        """Returns ``name`` after adding a ``l2_normalize`` node (semantics: the op table above)."""
        return self._add("l2_normalize", name, (x,))

    def build(self, **outputs: str) -> Graph:
        """Returns the graph with the given named outputs, e.g. build(features='pool', logits='fc')."""
        for key, node in outputs.items():
            if node not in self._names:
                raise ValueError(f"graph {self.name!r}: output {key!r} names unknown node {node!r}")
        return Graph(self.name, tuple(self._nodes), MappingProxyType(dict(outputs)))
