"""Deterministic synthetic weights for any `Graph`, with BatchNorm statistics calibrated; framework-free.

Real Inception weights cannot be downloaded everywhere (CI, air-gapped machines), yet conformance between
runtimes and with peer libraries must be tested on a network of the real shape. Random weights alone give
activations that vanish or explode through 90 layers, so every BatchNorm is calibrated as in data-dependent
initialization (Mishkin & Matas, "All you need is a good init", ICLR 2016; Salimans & Kingma, "Weight
Normalization", NeurIPS 2016): the graph is run node by node on a few synthetic images and each BatchNorm's
``running_mean`` / ``running_var`` are set to the statistics of its input, so that every layer's output is
well-scaled. Dense layers are scaled so their outputs vary across images by about `LOGIT_SPREAD`.

The arrays depend only on the graph, the seed and the image size, up to the last bits of float32 BLAS
sums on different machines; within one file every runtime reads the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import InputError
from .spec import Graph, Node, pos_embed_matrices

#: Target standard deviation, across images, of each dense output (so IS-style softmaxes are not flat).
LOGIT_SPREAD = 2.0

#: Mean of the BatchNorm shifts, in units of the normalized activation. Deep random ReLU networks are
#: mildly chaotic: with zero shifts half the units are cut and float32 rounding grows about 12% per layer,
#: to 1.5e-4 of the feature spread at Inception's depth, so a runtime comparison would test chaos, not
#: the implementation. A shift of 1 keeps ~84% of units active, leaves the features varying from image to
#: image by half their spread, and keeps float32 within 3e-5 of float64.
BN_SHIFT = 1.0


def synthetic_images(n: int, size: tuple[int, int] = (299, 299), seed: int = 0) -> np.ndarray:
    """Returns ``n`` deterministic uint8 RGB images (n, H, W, 3): smooth random fields plus fine noise.

    They have image-like spatial structure (so pooled features differ between images) and use the whole
    0..255 range; they are meant for tests and benchmarks, not as a data set.
    """
    if n < 1:
        raise InputError(f"synthetic_images: n must be at least 1, received {n}")
    h, w = size
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(n, 6, 6, 3))
    yi = np.linspace(0, 5, h)
    xi = np.linspace(0, 5, w)
    y0 = np.minimum(yi.astype(int), 4)
    x0 = np.minimum(xi.astype(int), 4)
    fy = (yi - y0)[None, :, None, None]
    fx = (xi - x0)[None, None, :, None]
    rows = coarse[:, y0] * (1 - fy) + coarse[:, y0 + 1] * fy
    field = rows[:, :, x0] * (1 - fx) + rows[:, :, x0 + 1] * fx
    field = field + 0.35 * rng.normal(size=field.shape)
    field = (field - field.min()) / (field.max() - field.min())
    return np.round(field * 255).astype(np.uint8)


def _pad(x: np.ndarray, padding, value: float) -> np.ndarray:
    (t, b), (lft, r) = padding
    return np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, kernel, stride) -> np.ndarray:
    """Returns the (N, Ho, Wo, C, kh, kw) windows of an NHWC array."""
    win = sliding_window_view(x, tuple(kernel), axis=(1, 2))
    return win[:, ::stride[0], ::stride[1]]


def _conv(x: np.ndarray, node: Node, p: Mapping[str, np.ndarray]) -> np.ndarray:
    a = node.attrs
    w = p[f"{node.name}.weight"]
    win = _windows(_pad(x, a["padding"], 0.0), a["kernel"], a["stride"])
    n, ho, wo = win.shape[:3]
    cols = win.reshape(n * ho * wo, -1)
    y = (cols @ w.reshape(w.shape[0], -1).T).reshape(n, ho, wo, -1)
    if a["bias"]:
        y = y + p[f"{node.name}.bias"]
    return y


def _pool(x: np.ndarray, node: Node) -> np.ndarray:
    a = node.attrs
    if node.op == "maxpool2d":
        return _windows(_pad(x, a["padding"], -np.inf), a["kernel"], a["stride"]).max(axis=(-2, -1))
    total = _windows(_pad(x, a["padding"], 0.0), a["kernel"], a["stride"]).sum(axis=(-2, -1))
    if a["count_include_pad"]:
        return total / (a["kernel"][0] * a["kernel"][1])
    ones = _pad(np.ones((1, *x.shape[1:3], 1), x.dtype), a["padding"], 0.0)
    return total / _windows(ones, a["kernel"], a["stride"]).sum(axis=(-2, -1))


def _run(node: Node, xs: list[np.ndarray], p: Mapping[str, np.ndarray]) -> np.ndarray:
    """Returns one node's output; activations are NHWC (or (N, F) after flatten)."""
    a = node.attrs
    x = xs[0] if xs else None
    if node.op == "channel_affine":
        return x * np.asarray(a["scale"], x.dtype) + np.asarray(a["shift"], x.dtype)
    if node.op == "conv2d":
        return _conv(x, node, p)
    if node.op == "batchnorm":
        n = node.name
        inv = p[f"{n}.weight"] / np.sqrt(p[f"{n}.running_var"] + a["eps"])
        return (x - p[f"{n}.running_mean"]) * inv + p[f"{n}.bias"]
    if node.op == "relu":
        return np.maximum(x, 0)
    if node.op in ("maxpool2d", "avgpool2d"):
        return _pool(x, node)
    if node.op == "concat":
        return np.concatenate(xs, axis=-1)
    if node.op == "global_avgpool":
        return x.mean(axis=(1, 2))
    if node.op == "flatten":
        return np.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1) if x.ndim == 4 else x
    if node.op == "flatten_hwc":  # NHWC here: slice the channels, reshape
        return x[..., :a["channels"]].reshape(x.shape[0], -1)
    if node.op == "dense":
        y = x @ p[f"{node.name}.weight"].T
        return y + p[f"{node.name}.bias"] if a["bias"] else y
    if node.op in _TOKEN_OPS:
        return _run_token(node, xs, p)
    raise InputError(f"synthetic weights: node {node.name!r} has op {node.op!r}, which this calibrator "
                     f"does not know; extend fidkit.archs.synthetic._run")


#: The token ops of `fidkit.archs.spec` (vision transformers).
_TOKEN_OPS = frozenset({"tokens", "insert_tokens", "pos_embed", "layernorm", "linear", "attention", "gelu",
                        "quick_gelu", "swiglu", "layerscale", "add", "select_token", "l2_normalize"})


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _run_token(node: Node, xs: list[np.ndarray], p: Mapping[str, np.ndarray]) -> np.ndarray:
    """Returns one token op's output on (N, T, D) activations (a patch grid arrives NHWC)."""
    from scipy.special import erf

    a, n = node.attrs, node.name
    x = xs[0]
    if node.op == "tokens":
        return x.reshape(x.shape[0], -1, x.shape[-1])
    if node.op == "insert_tokens":
        value = np.broadcast_to(p[f"{n}.value"], (x.shape[0], *p[f"{n}.value"].shape[1:])).astype(x.dtype)
        return np.concatenate([x[:, :a["at"]], value, x[:, a["at"]:]], axis=1)
    if node.op == "pos_embed":
        (gh, gw), (mh, mw), prefix = a["grid"], a["table_grid"], a["prefix"]
        table = p[f"{n}.value"][0].astype(np.float64)
        ah, aw = pos_embed_matrices(a)
        grid = np.einsum("hm,wn,mnd->hwd", ah, aw, table[prefix:].reshape(mh, mw, -1)).reshape(gh * gw, -1)
        return x + np.concatenate([table[:prefix], grid])[None].astype(x.dtype)
    if node.op == "layernorm":
        mean = x.mean(axis=-1, keepdims=True)
        y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + a["eps"])
        return y * p[f"{n}.weight"] + p[f"{n}.bias"]
    if node.op == "linear":
        y = x @ p[f"{n}.weight"].T
        return y + p[f"{n}.bias"] if a["bias"] else y
    if node.op == "attention":
        b, t, _ = x.shape
        dim, heads = a["dim"], a["heads"]
        q, k, v = x.reshape(b, t, 3, heads, dim // heads).transpose(2, 0, 3, 1, 4)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dim // heads)
        w = np.exp(s - s.max(axis=-1, keepdims=True))
        w = w / w.sum(axis=-1, keepdims=True)
        return (w @ v).transpose(0, 2, 1, 3).reshape(b, t, dim)
    if node.op == "gelu":
        if a["approximate"] == "tanh":
            return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))
    if node.op == "quick_gelu":
        return x * _sigmoid(1.702 * x)
    if node.op == "swiglu":
        x1, x2 = np.split(x, 2, axis=-1)
        return x1 * _sigmoid(x1) * x2
    if node.op == "layerscale":
        return x * p[f"{n}.gamma"]
    if node.op == "add":
        return x + xs[1]
    if node.op == "l2_normalize":
        return x / np.sqrt((x.astype(np.float64) ** 2).sum(axis=-1, keepdims=True))
    return x[:, a["index"]]  # select_token


#: Scale of the synthetic class/register tokens and position table, in units of the activations' rms.
TOKEN_SCALE = 0.5


def _token_params(node: Node, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Returns seeded float32 parameters of a token op: linear layers Gaussian with variance 1/fan_in
    (bias std 0.1), LayerNorm scale uniform in [0.5, 1.5] (shift std 0.1), LayerScale gamma uniform in
    [0.1, 0.5] (so that each block adds a fraction of the residual stream, as trained ViTs do), learned
    tokens and position tables Gaussian with std `TOKEN_SCALE`."""
    f32, a, n = np.float32, node.attrs, node.name
    shapes = Graph("node", (node,), {}).param_shapes()
    out: dict[str, np.ndarray] = {}
    if node.op == "linear":
        w = rng.standard_normal(shapes[f"{n}.weight"]) / np.sqrt(a["in_features"])
        out[f"{n}.weight"] = w.astype(f32)
        if a["bias"]:
            out[f"{n}.bias"] = (0.1 * rng.standard_normal(a["out_features"])).astype(f32)
    elif node.op == "layernorm":
        out[f"{n}.weight"] = rng.uniform(0.5, 1.5, a["dim"]).astype(f32)
        out[f"{n}.bias"] = (0.1 * rng.standard_normal(a["dim"])).astype(f32)
    elif node.op == "layerscale":
        out[f"{n}.gamma"] = rng.uniform(0.1, 0.5, a["dim"]).astype(f32)
    else:
        for key, shape in shapes.items():
            out[key] = (TOKEN_SCALE * rng.standard_normal(shape)).astype(f32)
    return out


def synthetic_weights(graph: Graph, *, seed: int = 0, size: tuple[int, int] = (299, 299),
                      n_images: int = 2) -> dict[str, np.ndarray]:
    """Returns seeded float32 weights for every parameter of ``graph``, BatchNorm statistics calibrated.

    Conv and dense weights are Gaussian with variance 1/fan_in; BatchNorm scale is uniform in [0.5, 1.5]
    and shift Gaussian (mean `BN_SHIFT`, std 0.2); running statistics are the mean and variance of the BatchNorm's input
    over ``n_images`` `synthetic_images` of ``size`` (scaled to [-1, 1]). Dense weights are then rescaled
    so each output's spread across those images is about `LOGIT_SPREAD`.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    f32 = np.float32
    images = synthetic_images(n_images, size, seed=seed + 1).astype(f32) / f32(127.5) - f32(1.0)
    values: dict[str, np.ndarray] = {}
    last_use = {i: node.name for node in graph.nodes for i in node.inputs}
    for node in graph.nodes:
        a, n = node.attrs, node.name
        if node.op == "input":
            if a["channels"] != 3:
                images = np.repeat(images.mean(axis=-1, keepdims=True), a["channels"], axis=-1)
            values[n] = images
            continue
        xs = [values[i] for i in node.inputs]
        if node.op == "conv2d":
            fan_in = a["in_channels"] * a["kernel"][0] * a["kernel"][1]
            shape = (a["out_channels"], a["in_channels"], *a["kernel"])
            w = rng.standard_normal(shape)
            params[f"{n}.weight"] = (w / np.sqrt(fan_in)).astype(f32)
            if a["bias"]:
                params[f"{n}.bias"] = (0.1 * rng.standard_normal(a["out_channels"])).astype(f32)
        elif node.op == "batchnorm":
            c = a["channels"]
            x64 = xs[0].reshape(-1, c).astype(np.float64)
            params[f"{n}.weight"] = rng.uniform(0.5, 1.5, c).astype(f32)
            params[f"{n}.bias"] = (BN_SHIFT + 0.2 * rng.standard_normal(c)).astype(f32)
            params[f"{n}.running_mean"] = x64.mean(axis=0).astype(f32)
            params[f"{n}.running_var"] = np.maximum(x64.var(axis=0), 1e-4).astype(f32)
        elif node.op in _TOKEN_OPS:
            params.update(_token_params(node, rng))
        elif node.op == "dense":
            shape = (a["out_features"], a["in_features"])
            w = rng.standard_normal(shape) / np.sqrt(a["in_features"])
            x64 = xs[0].astype(np.float64)
            spread = float(np.std(x64 @ w.T, axis=0).mean()) if x64.shape[0] > 1 else 0.0
            params[f"{n}.weight"] = (w * (LOGIT_SPREAD / spread if spread > 0 else 1.0)).astype(f32)
            if a["bias"]:
                params[f"{n}.bias"] = rng.standard_normal(a["out_features"]).astype(f32)
        values[n] = _run(node, xs, params).astype(f32)
        for i in node.inputs:
            if last_use[i] == n:
                del values[i]
    expected = graph.param_shapes()
    if {k: v.shape for k, v in params.items()} != expected:
        raise InputError(f"graph {graph.name!r}: synthetic parameters do not match param_shapes()")
    return {k: params[k] for k in expected}


def write_synthetic_weights(graph: Graph, path: str | os.PathLike[str], *, seed: int = 0,
                            size: tuple[int, int] = (299, 299), n_images: int = 2) -> Path:
    """Returns ``path`` after saving `synthetic_weights` of ``graph`` there (canonical .npz, atomic write)."""
    from ..weights import save_canonical

    save_canonical(synthetic_weights(graph, seed=seed, size=size, n_images=n_images), path)
    return Path(path)
