"""The JAX interpreter of `fidkit.archs.spec.Graph`: a pure function of (params, images), jitted, NHWC.

Parameters are converted once from the canonical torch layouts (conv (O, I, kh, kw) -> HWIO, dense
(out, in) -> (in, out)); every convolution and matmul runs at ``Precision.HIGHEST`` so that no backend
silently drops to bfloat16 or TF32 passes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from ...archs.spec import OPS, Graph, Node, pos_embed_matrices
from ...errors import InputError
from ...registry import import_runtime, parse_device, pick_gpu
from ..common import channels_last_params, graph_and_params

if TYPE_CHECKING:
    from ...registry import ExtractorSpec
    from ...weights import CanonicalWeights


def _jax() -> Any:
    return import_runtime("jax", "the jax runtime")


def resolve_device(device: str) -> Any:
    """Returns the jax device for 'cpu', 'cuda' / 'gpu' or 'auto' (a GPU when one is visible, else CPU)."""
    jax = _jax()
    gpus = []
    if parse_device(device)[0] != "cpu":
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            pass
    gpu = pick_gpu(device, gpus, "jax", " (is jax[cuda] installed?)")
    return jax.devices("cpu")[0] if gpu is None else gpu


def to_jax_params(graph: Graph, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Returns float32 parameters in JAX layouts: conv kernels HWIO, dense (in, out), others unchanged."""
    return channels_last_params(graph, params)


def _pool(lax: Any, jnp: Any, node: Node, x: Any) -> Any:
    a = node.attrs
    k, s = tuple(a["kernel"]), tuple(a["stride"])
    dims, strides = (1, *k, 1), (1, *s, 1)
    pads = ((0, 0), *(tuple(p) for p in a["padding"]), (0, 0))
    if node.op == "maxpool2d":
        return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, pads)
    total = lax.reduce_window(x, 0.0, lax.add, dims, strides, pads)
    if a["count_include_pad"]:
        return total / (k[0] * k[1])
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    return total / lax.reduce_window(ones, 0.0, lax.add, dims, strides, pads)


def apply(graph: Graph, params: Mapping[str, Any], x: Any) -> dict[str, Any]:
    """Returns the graph's named outputs for NHWC input ``x``; pure, so it can be jitted or vmapped."""
    jax = _jax()
    jnp, lax = jax.numpy, jax.lax
    hi = lax.Precision.HIGHEST
    last_use = {i: n.name for n in graph.nodes for i in n.inputs}
    wanted = set(graph.outputs.values())
    values: dict[str, Any] = {}
    for node in graph.nodes:
        a, n, op = node.attrs, node.name, node.op
        xs = [values[i] for i in node.inputs]
        if op == "input":
            y = x
        elif op == "channel_affine":
            y = xs[0] * jnp.asarray(a["scale"], jnp.float32) + jnp.asarray(a["shift"], jnp.float32)
        elif op == "conv2d":
            y = lax.conv_general_dilated(xs[0], params[f"{n}.weight"], tuple(a["stride"]),
                                         tuple(tuple(p) for p in a["padding"]),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=hi)
            if a["bias"]:
                y = y + params[f"{n}.bias"]
        elif op == "batchnorm":
            inv = params[f"{n}.weight"] * lax.rsqrt(params[f"{n}.running_var"] + a["eps"])
            y = (xs[0] - params[f"{n}.running_mean"]) * inv + params[f"{n}.bias"]
        elif op == "relu":
            y = jnp.maximum(xs[0], 0.0)
        elif op in ("maxpool2d", "avgpool2d"):
            y = _pool(lax, jnp, node, xs[0])
        elif op == "concat":
            y = jnp.concatenate(xs, axis=-1)
        elif op == "global_avgpool":
            y = jnp.mean(xs[0], axis=(1, 2))
        elif op == "flatten":
            v = xs[0]
            y = jnp.transpose(v, (0, 3, 1, 2)).reshape(v.shape[0], -1) if v.ndim == 4 else v
        elif op == "dense":
            y = jnp.matmul(xs[0], params[f"{n}.weight"], precision=hi)
            if a["bias"]:
                y = y + params[f"{n}.bias"]
        elif op in _TOKEN_OPS:
            y = _token_op(jax, node, xs, params)
        else:
            raise InputError(f"graph {graph.name!r}: node {n!r} has op {op!r}, which the jax runtime "
                             f"does not implement")
        values[n] = y
        for i in node.inputs:
            if last_use[i] == n and i not in wanted:
                del values[i]
    return {key: values[name] for key, name in graph.outputs.items()}


#: The token ops (vision transformers), run by `_token_op`.
_TOKEN_OPS = OPS - {"input", "channel_affine", "conv2d", "batchnorm", "relu", "maxpool2d", "avgpool2d",
                    "concat", "global_avgpool", "flatten", "dense"}


def _token_op(jax: Any, node: Node, xs: list[Any], params: Mapping[str, Any]) -> Any:
    """Returns the output of a token op (`fidkit.archs.spec`); activations (N, T, D), weights (out, in)."""
    jnp, lax = jax.numpy, jax.lax
    hi = lax.Precision.HIGHEST
    op, a, n, x = node.op, node.attrs, node.name, xs[0]
    if op == "tokens":  # NHWC: the patch grid in row-major order is a reshape
        return x.reshape(x.shape[0], -1, x.shape[-1])
    if op == "insert_tokens":
        value = jnp.broadcast_to(params[f"{n}.value"], (x.shape[0], *params[f"{n}.value"].shape[1:]))
        return jnp.concatenate([x[:, :a["at"]], value, x[:, a["at"]:]], axis=1)
    if op == "pos_embed":
        (gh, gw), (mh, mw), prefix = a["grid"], a["table_grid"], a["prefix"]
        table = params[f"{n}.value"][0]
        grid = table[prefix:].reshape(mh, mw, -1)
        if (gh, gw) != (mh, mw):
            ah, aw = (jnp.asarray(m, jnp.float32) for m in pos_embed_matrices(a))
            grid = jnp.einsum("hm,wn,mnd->hwd", ah, aw, grid, precision=hi)
        return x + jnp.concatenate([table[:prefix], grid.reshape(gh * gw, -1)])[None]
    if op == "layernorm":
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * lax.rsqrt(var + a["eps"]) * params[f"{n}.weight"] + params[f"{n}.bias"]
    if op == "linear":
        y = jnp.einsum("...i,oi->...o", x, params[f"{n}.weight"], precision=hi)
        return y + params[f"{n}.bias"] if a["bias"] else y
    if op == "attention":
        b, t, _ = x.shape
        dim, heads = a["dim"], a["heads"]
        q, k, v = jnp.transpose(x.reshape(b, t, 3, heads, dim // heads), (2, 0, 3, 1, 4))
        scores = jnp.einsum("bhqd,bhkd->bhqk", q * (dim // heads) ** -0.5, k, precision=hi)
        weights = jax.nn.softmax(scores, axis=-1)
        y = jnp.einsum("bhqk,bhkd->bhqd", weights, v, precision=hi)
        return jnp.transpose(y, (0, 2, 1, 3)).reshape(b, t, dim)
    if op == "gelu":
        return jax.nn.gelu(x, approximate=a["approximate"] == "tanh")
    if op == "quick_gelu":
        return x * jax.nn.sigmoid(1.702 * x)
    if op == "swiglu":
        x1, x2 = jnp.split(x, 2, axis=-1)
        return jax.nn.silu(x1) * x2
    if op == "layerscale":
        return x * params[f"{n}.gamma"]
    if op == "add":
        return x + xs[1]
    if op == "l2_normalize":
        return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    if op == "select_token":
        return x[:, a["index"]]
    if op == "flatten_hwc":  # NHWC already: slice the channels, reshape
        return x[..., :a["channels"]].reshape(x.shape[0], -1)
    raise InputError(f"node {n!r} has op {op!r}, which the jax runtime does not implement")


class BatchPadding:
    """Whether to pad a batch smaller than the largest one seen (the last one, usually) up to that size,
    so that jit reuses the compiled network instead of compiling it again for the new shape: yes when
    running the padded images costs less than a compile, both measured on earlier calls (a compile is ~4 s
    for Inception on a CPU, where an image is ~0.1 s; on a GPU padding always wins)."""

    def __init__(self) -> None:
        self.sizes: set[int] = set()
        self.largest = 0
        self.compile_s = 0.0
        self._first_s = 0.0
        self.run_s: float | None = None  # a call of the largest size, compiled already

    def target(self, n: int) -> int:
        """Returns the batch size to run ``n`` images at: ``n``, or a larger compiled size when padding
        to it is cheaper than compiling ``n``."""
        if n in self.sizes or n > self.largest or self.run_s is None:
            return n
        return self.largest if self.run_s * (1 - n / self.largest) < self.compile_s else n

    def record(self, n: int, seconds: float) -> None:
        """Records that a batch of ``n`` took ``seconds`` (a size's first call includes its compile)."""
        if n not in self.sizes:
            self.sizes.add(n)
            if n > self.largest:
                self.largest, self.run_s, self._first_s = n, None, seconds
        elif n == self.largest and self.run_s is None:
            self.run_s = seconds
            self.compile_s = max(self._first_s - seconds, 0.0)


def network(*, spec: ExtractorSpec, weights: CanonicalWeights | None, device: str) -> Any:
    """Returns the JAX network stage of ``spec``: a normalised float32 NHWC array on the device ->
    {'features', 'logits'} float32 arrays there. A batch smaller than one already compiled is padded
    to it when that is cheaper than compiling (`BatchPadding`)."""
    jax = _jax()
    graph, params = graph_and_params(spec, weights, "jax")
    dev = resolve_device(device)
    params = jax.device_put(to_jax_params(graph, params), dev)
    net = jax.jit(partial(apply, graph))
    padding = BatchPadding()

    def forward(x: Any) -> dict[str, Any]:
        start = time.perf_counter()
        n = int(x.shape[0])
        target = padding.target(n)
        if target > n:
            x = jax.numpy.concatenate([x, jax.numpy.zeros((target - n, *x.shape[1:]), x.dtype)])
        out = net(params, x)
        result = {k: v[:n] for k, v in out.items()}
        jax.block_until_ready(result)
        padding.record(target, time.perf_counter() - start)
        return result

    forward.apply = net  # type: ignore[attr-defined]
    forward.padding = padding  # type: ignore[attr-defined]
    forward.params = params  # type: ignore[attr-defined]
    forward.layout = "NHWC"  # type: ignore[attr-defined]
    forward.device = str(dev)  # type: ignore[attr-defined]
    return forward
