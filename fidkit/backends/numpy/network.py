"""The float64 reference interpreter of `fidkit.archs.spec.Graph`: what every other runtime is checked against.

Semantics are those of the table in `fidkit.archs.spec` with PyTorch layouts: activations are NCHW,
conv kernels (out, in, kh, kw), dense weights (out, in), explicit ((top, bottom), (left, right))
padding, floor output sizes (no ceil mode). Everything is computed in float64 so the reference is
limited by the weights, not by rounding. A convolution is one matrix product over im2col patches,
done a few images at a time so the patch buffer stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...archs.spec import Graph, Node, pos_embed_matrices
from ...errors import InputError
from ...registry import parse_device
from ..common import graph_and_params

if TYPE_CHECKING:
    from ...registry import ExtractorSpec
    from ...weights import CanonicalWeights

Params = Mapping[str, np.ndarray]

#: Upper bound on the im2col buffer of one convolution chunk: big enough for BLAS, small for memory.
_IM2COL_BYTES = 32 << 20
#: Images run through the graph at once: float64 Inception activations are ~20 MB per image per layer.
_FORWARD_CHUNK = 8


def _pad(x: np.ndarray, padding: Any, value: float) -> np.ndarray:
    (pt, pb), (pl, pr) = padding
    if pt == pb == pl == pr == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def _pool(x: np.ndarray, kernel: Any, stride: Any, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """Returns ``reduce`` folded over every kernel offset of padded ``x`` (N, C, H, W): a strided pool."""
    kh, kw = kernel
    sh, sw = stride
    ho = (x.shape[2] - kh) // sh + 1
    wo = (x.shape[3] - kw) // sw + 1

    def tap(p: int, q: int) -> np.ndarray:
        return x[:, :, p:p + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw]

    offsets = [(p, q) for p in range(kh) for q in range(kw)]
    out = tap(*offsets[0]).copy()
    for p, q in offsets[1:]:
        reduce(out, tap(p, q), out=out)
    return out


def _input(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    (x,) = xs
    if x.ndim != 4 or x.shape[-1] != node.attrs["channels"]:
        raise InputError(f"graph input: expected NHWC images with {node.attrs['channels']} channels, "
                         f"received shape {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float64)


def _bcast(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _channel_affine(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    (x,) = xs
    scale = np.asarray(node.attrs["scale"], dtype=np.float64)
    shift = np.asarray(node.attrs["shift"], dtype=np.float64)
    return x * _bcast(scale, x.ndim) + _bcast(shift, x.ndim)


def _conv2d(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    (x,) = xs
    a = node.attrs
    w = params[f"{node.name}.weight"]
    o, c, kh, kw = w.shape
    sh, sw = a["stride"]
    (pt, pb), (pl, pr) = a["padding"]
    # im2col in NHWC order, one GEMM per chunk of images: out[n, i, j, :] = cols[n, i, j, (c, p, q)] @ W
    xh = x.transpose(0, 2, 3, 1)
    if pt or pb or pl or pr:
        xh = np.pad(xh, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    win = sliding_window_view(xh, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # (N, Ho, Wo, C, kh, kw)
    n, ho, wo = win.shape[:3]
    wm = w.reshape(o, c * kh * kw).T
    step = max(1, _IM2COL_BYTES // max(1, ho * wo * c * kh * kw * 8))
    out = np.empty((n, o, ho, wo), dtype=np.float64)
    for i in range(0, n, step):
        cols = win[i:i + step].reshape(-1, c * kh * kw)
        out[i:i + step] = (cols @ wm).reshape(-1, ho, wo, o).transpose(0, 3, 1, 2)
    if a["bias"]:
        out += _bcast(params[f"{node.name}.bias"], 4)
    return out


def _batchnorm(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    (x,) = xs
    p = node.name
    inv = params[f"{p}.weight"] / np.sqrt(params[f"{p}.running_var"] + node.attrs["eps"])
    return (x - _bcast(params[f"{p}.running_mean"], x.ndim)) * _bcast(inv, x.ndim) \
        + _bcast(params[f"{p}.bias"], x.ndim)


def _relu(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    return np.maximum(xs[0], 0.0)


def _maxpool2d(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    a = node.attrs
    return _pool(_pad(xs[0], a["padding"], -np.inf), a["kernel"], a["stride"], np.maximum)


def _avgpool2d(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    (x,) = xs
    a = node.attrs
    kh, kw = a["kernel"]
    sums = _pool(_pad(x, a["padding"], 0.0), a["kernel"], a["stride"], np.add)
    if a["count_include_pad"]:
        return sums / (kh * kw)
    ones = np.ones((1, 1) + x.shape[2:], dtype=np.float64)
    counts = _pool(_pad(ones, a["padding"], 0.0), a["kernel"], a["stride"], np.add)
    return sums / counts


def _concat(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(xs, axis=1)


def _global_avgpool(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0].mean(axis=(2, 3))


def _flatten(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0].reshape(xs[0].shape[0], -1)


def _flatten_hwc(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0][:, :node.attrs["channels"]]
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(x.shape[0], -1)


def _dense(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    y = xs[0] @ params[f"{node.name}.weight"].T
    if node.attrs["bias"]:
        y = y + params[f"{node.name}.bias"]
    return y


def _tokens(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    return np.ascontiguousarray(x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1))


def _insert_tokens(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    (x,) = xs
    at = node.attrs["at"]
    value = np.broadcast_to(params[f"{node.name}.value"], (x.shape[0], *params[f"{node.name}.value"].shape[1:]))
    return np.concatenate([x[:, :at], value, x[:, at:]], axis=1)


def _pos_embed(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    (x,) = xs
    a = node.attrs
    table = params[f"{node.name}.value"][0]
    (gh, gw), (mh, mw), prefix = a["grid"], a["table_grid"], a["prefix"]
    if x.shape[1] != prefix + gh * gw:
        raise InputError(f"node {node.name!r}: {x.shape[1]} tokens, expected {prefix} + {gh}x{gw} patches")
    ah, aw = pos_embed_matrices(a)
    grid = np.einsum("hm,wn,mnd->hwd", ah, aw, table[prefix:].reshape(mh, mw, -1)).reshape(gh * gw, -1)
    return x + np.concatenate([table[:prefix], grid])[None]


def _layernorm(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    (x,) = xs
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + node.attrs["eps"])
    return y * params[f"{node.name}.weight"] + params[f"{node.name}.bias"]


def _linear(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    y = xs[0] @ params[f"{node.name}.weight"].T
    if node.attrs["bias"]:
        y = y + params[f"{node.name}.bias"]
    return y


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _attention(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    (x,) = xs
    n, t, _ = x.shape
    dim, heads = node.attrs["dim"], node.attrs["heads"]
    q, k, v = x.reshape(n, t, 3, heads, dim // heads).transpose(2, 0, 3, 1, 4)  # each (N, heads, T, hd)
    weights = _softmax((q @ k.transpose(0, 1, 3, 2)) / np.sqrt(dim // heads))
    return (weights @ v).transpose(0, 2, 1, 3).reshape(n, t, dim)


def _gelu(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    from scipy.special import erf

    x = xs[0]
    if node.attrs["approximate"] == "tanh":
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _quick_gelu(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0] / (1.0 + np.exp(-1.702 * xs[0]))


def _swiglu(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    x1, x2 = np.split(xs[0], 2, axis=-1)
    return x1 / (1.0 + np.exp(-x1)) * x2


def _layerscale(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0] * params[f"{node.name}.gamma"]


def _add(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0] + xs[1]


def _select_token(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(xs[0][:, node.attrs["index"]])


def _l2_normalize(node: Node, params: Params, xs: list[np.ndarray]) -> np.ndarray:
    return xs[0] / np.sqrt((xs[0] ** 2).sum(axis=-1, keepdims=True))


_OPS: dict[str, Callable[[Node, Params, list[np.ndarray]], np.ndarray]] = {
    "input": _input, "channel_affine": _channel_affine, "conv2d": _conv2d, "batchnorm": _batchnorm,
    "relu": _relu, "maxpool2d": _maxpool2d, "avgpool2d": _avgpool2d, "concat": _concat,
    "global_avgpool": _global_avgpool, "flatten": _flatten, "dense": _dense,
    "tokens": _tokens, "insert_tokens": _insert_tokens, "pos_embed": _pos_embed, "layernorm": _layernorm,
    "linear": _linear, "attention": _attention, "gelu": _gelu, "quick_gelu": _quick_gelu, "swiglu": _swiglu,
    "layerscale": _layerscale, "add": _add, "select_token": _select_token, "l2_normalize": _l2_normalize,
    "flatten_hwc": _flatten_hwc,
}


def run_graph(graph: Graph, params: Params, images: np.ndarray) -> dict[str, np.ndarray]:
    """Returns the graph's named outputs (float64; 4-D outputs NCHW) for NHWC input ``images``.

    ``images`` is what the ``input`` node receives (already resized and normalised); ``params`` maps
    ``f"{node}.{param}"`` to arrays in PyTorch layout.
    """
    wanted = set(graph.outputs.values())
    consumers: dict[str, int] = {}
    for node in graph.nodes:
        for i in node.inputs:
            consumers[i] = consumers.get(i, 0) + 1
    values: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        xs = [values[i] for i in node.inputs] if node.inputs else [np.asarray(images)]
        values[node.name] = _OPS[node.op](node, params, xs)
        for i in node.inputs:  # free activations nobody reads any more: Inception is memory-bound
            consumers[i] -= 1
            if consumers[i] == 0 and i not in wanted:
                del values[i]
    return {key: values[name] for key, name in graph.outputs.items()}


def network(*, spec: ExtractorSpec, weights: CanonicalWeights | None, device: str) -> Any:
    """Returns the numpy network stage of ``spec``: float64 NHWC input (normalised) -> float64 outputs.

    Raises `InputError` for a GPU device (the numpy runtime runs on the CPU only).
    """
    if parse_device(device)[0] == "gpu":
        raise InputError(f"the numpy runtime runs on the CPU only, but device {device!r} was asked "
                         f"for; pass --device cpu or choose another runtime")
    graph, params = graph_and_params(spec, weights, "numpy")

    def forward(x: np.ndarray) -> dict[str, np.ndarray]:
        if len(x) == 0:
            raise InputError(f"extractor {spec.name!r} (numpy): received an empty batch")
        # images are independent, so chunking changes nothing but the peak memory of float64 activations
        outs = [run_graph(graph, params, x[i:i + _FORWARD_CHUNK]) for i in range(0, len(x), _FORWARD_CHUNK)]
        return {key: np.concatenate([o[key] for o in outs]) for key in outs[0]}

    forward.layout = "NHWC"  # type: ignore[attr-defined]
    forward.device = "cpu"  # type: ignore[attr-defined]
    return forward
