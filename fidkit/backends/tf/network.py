"""The TensorFlow interpreter of `fidkit.archs.spec.Graph`: a ``tf.function`` over NHWC, float32, TF32 off.

Parameters become non-trainable ``tf.Variable``s in TF layouts (conv kernels HWIO, dense (in, out)),
converted once from the canonical torch layouts. `keras_model` wraps the same interpreter as a Keras
model for Keras users (TensorFlow backend).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ...archs.spec import OPS, Graph, Node, pos_embed_matrices
from ...errors import BackendUnavailableError, InputError
from ...registry import import_runtime, parse_device, pick_gpu
from ..common import channels_last_params, graph_and_params, load_params

if TYPE_CHECKING:
    from ...registry import ExtractorSpec
    from ...weights import CanonicalWeights


def _tf() -> Any:
    return import_runtime("tf", "the tf runtime")


def resolve_device(device: str) -> str:
    """Returns the TF device string for 'cpu', 'cuda' / 'gpu' or 'auto' (a GPU when visible, else CPU)."""
    gpus = [] if parse_device(device)[0] == "cpu" else _tf().config.list_physical_devices("GPU")
    gpu = pick_gpu(device, [f"/GPU:{i}" for i in range(len(gpus))], "TensorFlow")
    return "/CPU:0" if gpu is None else gpu


def to_tf_params(graph: Graph, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Returns float32 parameters in TF layouts: conv kernels HWIO, dense (in, out), others unchanged."""
    return channels_last_params(graph, params)


def _is_same(padding: Any, kernel: Any, stride: Any, size: Any) -> bool:
    """Returns whether explicit ``padding`` equals what TF's 'SAME' pads for this input size."""
    for (before, after), k, s, n in zip(padding, kernel, stride, size, strict=True):
        if n is None:
            return False
        total = max((-(-n // s) - 1) * s + k - n, 0)
        if (before, after) != (total // 2, total - total // 2):
            return False
    return True


def _pad(tf: Any, x: Any, padding: Any, value: float) -> Any:
    (t, b), (lft, r) = padding
    if t == b == lft == r == 0:
        return x
    return tf.pad(x, [[0, 0], [t, b], [lft, r], [0, 0]], constant_values=value)


def _pool(tf: Any, node: Node, x: Any) -> Any:
    a = node.attrs
    k, s, pad = list(a["kernel"]), list(a["stride"]), a["padding"]
    same = _is_same(pad, k, s, x.shape[1:3])
    if node.op == "maxpool2d":
        if same:
            return tf.nn.max_pool2d(x, k, s, "SAME")
        return tf.nn.max_pool2d(_pad(tf, x, pad, float("-inf")), k, s, "VALID")
    if not a["count_include_pad"]:
        if same:  # TF's own SAME average already leaves the padding out of the count
            return tf.nn.avg_pool2d(x, k, s, "SAME")
        total = tf.nn.avg_pool2d(_pad(tf, x, pad, 0.0), k, s, "VALID") * float(k[0] * k[1])
        ones = _pad(tf, tf.ones([1, x.shape[1], x.shape[2], 1], x.dtype), pad, 0.0)
        return total / (tf.nn.avg_pool2d(ones, k, s, "VALID") * float(k[0] * k[1]))
    return tf.nn.avg_pool2d(_pad(tf, x, pad, 0.0), k, s, "VALID")


#: The token ops (vision transformers), run by `_token_op`.
_TOKEN_OPS = OPS - {"input", "channel_affine", "conv2d", "batchnorm", "relu", "maxpool2d", "avgpool2d",
                    "concat", "global_avgpool", "flatten", "dense"}


def _token_op(tf: Any, node: Node, xs: list[Any], params: Mapping[str, Any]) -> Any:
    """Returns the output of a token op (`fidkit.archs.spec`); activations (N, T, D), weights (out, in)."""
    op, a, n, x = node.op, node.attrs, node.name, xs[0]
    if op == "tokens":  # NHWC: the patch grid in row-major order is a reshape
        return tf.reshape(x, [tf.shape(x)[0], -1, x.shape[-1]])
    if op == "insert_tokens":
        value = params[f"{n}.value"]
        value = tf.tile(value, [tf.shape(x)[0], 1, 1])
        return tf.concat([x[:, :a["at"]], value, x[:, a["at"]:]], axis=1)
    if op == "pos_embed":
        (gh, gw), (mh, mw), prefix = a["grid"], a["table_grid"], a["prefix"]
        table = params[f"{n}.value"][0]
        grid = tf.reshape(table[prefix:], [mh, mw, -1])
        if (gh, gw) != (mh, mw):
            ah, aw = (tf.constant(m, tf.float32) for m in pos_embed_matrices(a))
            grid = tf.einsum("hm,wn,mnd->hwd", ah, aw, grid)
        return x + tf.concat([table[:prefix], tf.reshape(grid, [gh * gw, -1])], axis=0)[None]
    if op == "layernorm":
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + a["eps"]) * params[f"{n}.weight"] + params[f"{n}.bias"]
    if op == "linear":
        y = tf.einsum("...i,oi->...o", x, params[f"{n}.weight"])
        return y + params[f"{n}.bias"] if a["bias"] else y
    if op == "attention":
        dim, heads = a["dim"], a["heads"]
        t = x.shape[1]
        qkv = tf.transpose(tf.reshape(x, [-1, t, 3, heads, dim // heads]), [2, 0, 3, 1, 4])
        q, k, v = qkv[0] * (dim // heads) ** -0.5, qkv[1], qkv[2]
        weights = tf.nn.softmax(tf.matmul(q, k, transpose_b=True), axis=-1)
        return tf.reshape(tf.transpose(tf.matmul(weights, v), [0, 2, 1, 3]), [-1, t, dim])
    if op == "gelu":
        return tf.nn.gelu(x, approximate=a["approximate"] == "tanh")
    if op == "quick_gelu":
        return x * tf.sigmoid(1.702 * x)
    if op == "swiglu":
        x1, x2 = tf.split(x, 2, axis=-1)
        return tf.nn.silu(x1) * x2
    if op == "layerscale":
        return x * params[f"{n}.gamma"]
    if op == "add":
        return x + xs[1]
    if op == "l2_normalize":
        return x / tf.sqrt(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True))
    if op == "select_token":
        return x[:, a["index"]]
    if op == "flatten_hwc":  # NHWC already: slice the channels, reshape
        return tf.reshape(x[..., :a["channels"]], [-1, x.shape[1] * x.shape[2] * a["channels"]])
    raise InputError(f"node {n!r} has op {op!r}, which the tf runtime does not implement")


def apply(graph: Graph, params: Mapping[str, Any], x: Any) -> dict[str, Any]:
    """Returns the graph's named outputs for NHWC input ``x`` (params in `to_tf_params` layouts)."""
    tf = _tf()
    last_use = {i: n.name for n in graph.nodes for i in n.inputs}
    wanted = set(graph.outputs.values())
    values: dict[str, Any] = {}
    for node in graph.nodes:
        a, n, op = node.attrs, node.name, node.op
        xs = [values[i] for i in node.inputs]
        if op == "input":
            y = x
        elif op == "channel_affine":
            y = xs[0] * tf.constant(a["scale"], tf.float32) + tf.constant(a["shift"], tf.float32)
        elif op == "conv2d":
            (t, b), (lft, r) = a["padding"]
            pad = "VALID" if t == b == lft == r == 0 else [[0, 0], [t, b], [lft, r], [0, 0]]
            y = tf.nn.conv2d(xs[0], params[f"{n}.weight"], [1, *a["stride"], 1], pad)
            if a["bias"]:
                y = y + params[f"{n}.bias"]
        elif op == "batchnorm":
            inv = params[f"{n}.weight"] * tf.math.rsqrt(params[f"{n}.running_var"] + a["eps"])
            y = (xs[0] - params[f"{n}.running_mean"]) * inv + params[f"{n}.bias"]
        elif op == "relu":
            y = tf.nn.relu(xs[0])
        elif op in ("maxpool2d", "avgpool2d"):
            y = _pool(tf, node, xs[0])
        elif op == "concat":
            y = tf.concat(xs, axis=-1)
        elif op == "global_avgpool":
            y = tf.reduce_mean(xs[0], axis=[1, 2])
        elif op == "flatten":
            v = xs[0]
            y = tf.reshape(tf.transpose(v, [0, 3, 1, 2]), [-1, int(np.prod(v.shape[1:]))]) \
                if v.shape.rank == 4 else v
        elif op == "dense":
            y = tf.matmul(xs[0], params[f"{n}.weight"])
            if a["bias"]:
                y = y + params[f"{n}.bias"]
        elif op in _TOKEN_OPS:
            y = _token_op(tf, node, xs, params)
        else:
            raise InputError(f"graph {graph.name!r}: node {n!r} has op {op!r}, which the tf runtime "
                             f"does not implement")
        values[n] = y
        for i in node.inputs:
            if last_use[i] == n and i not in wanted:
                del values[i]
    return {key: values[name] for key, name in graph.outputs.items()}


def graph_module(graph: Graph, params: Mapping[str, np.ndarray], size: tuple[int, int]) -> Any:
    """Returns a ``tf.Module`` whose ``__call__`` (a tf.function) maps normalised NHWC images of ``size``
    to the graph's outputs."""
    tf = _tf()
    tf_params = to_tf_params(graph, params)

    class GraphModule(tf.Module):
        """A fidkit graph as a tf.Module: non-trainable variables, one traced function per batch shape."""

        def __init__(self) -> None:
            super().__init__(name=graph.name.replace("-", "_"))
            self.params = {k: tf.Variable(v, trainable=False, name=k.replace(".", "/"))
                           for k, v in tf_params.items()}

        @tf.function(input_signature=[tf.TensorSpec([None, *size, 3], tf.float32)])
        def __call__(self, x: Any) -> dict[str, Any]:
            return apply(graph, self.params, x)

    return GraphModule()


def keras_model(graph: Graph, params: Mapping[str, np.ndarray], size: tuple[int, int],
                mean: Any, std: Any) -> Any:
    """Returns a Keras model (TensorFlow backend): 0..255 NHWC images of ``size`` -> dict of graph outputs.

    Its weights are non-trainable Keras variables named by the canonical parameter names, so it saves,
    loads and composes like any Keras model.
    """
    _tf()
    import keras

    if keras.backend.backend() != "tensorflow":
        raise BackendUnavailableError(f"keras_model runs fidkit's TensorFlow interpreter and needs the "
                                      f"Keras 'tensorflow' backend; KERAS_BACKEND is "
                                      f"{keras.backend.backend()!r}")
    tf_params = to_tf_params(graph, params)
    mean32 = np.asarray(mean, np.float32)
    std32 = np.asarray(std, np.float32)

    class GraphLayer(keras.layers.Layer):
        """Runs a fidkit graph on (x - mean) / std; its weights are the graph's parameters."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(name=graph.name.replace("-", "_"), trainable=False, **kwargs)
            self.graph_params = {
                k: self.add_weight(name=k, shape=v.shape, initializer=keras.initializers.Constant(v),
                                   trainable=False)
                for k, v in tf_params.items()}

        def call(self, x: Any) -> dict[str, Any]:
            tf = _tf()
            values = {k: tf.convert_to_tensor(v) for k, v in self.graph_params.items()}
            return apply(graph, values, (x - mean32) / std32)

    inputs = keras.Input(shape=(*size, 3), dtype="float32", name="images")
    return keras.Model(inputs, GraphLayer()(inputs), name=graph.name.replace("-", "_"))


def keras_extractor(name: str = "inception-tf2015", *, weights: str | None = None,
                    policy: str | None = None) -> Any:
    """Returns `keras_model` for a registered graph extractor, with its weights and resize normalization.

    ``weights`` and ``policy`` are resolved as by `fidkit.extractor`; the model takes images already at
    the extractor's input size (resize them with `fidkit.resize.resize` or the tf fast path first).
    """
    from ...registry import get_spec, load_object
    from ...resize import get_policy
    from ...weights import resolve_weights

    spec = get_spec(name)
    if spec.arch is None:
        raise InputError(f"extractor {name!r} has no graph (spec.arch); it has no Keras model")
    cw = resolve_weights(spec.weights, weights)
    graph: Graph = load_object(spec.arch)()
    pol = get_policy(policy or spec.policy)
    return keras_model(graph, load_params(graph, cw.path), tuple(spec.input_size), pol.mean, pol.std)


def network(*, spec: ExtractorSpec, weights: CanonicalWeights | None, device: str) -> Any:
    """Returns the TensorFlow network stage of ``spec``: a normalised float32 NHWC tensor -> {'features',
    'logits'} float32 tensors (TF32 off on GPUs)."""
    tf = _tf()
    graph, params = graph_and_params(spec, weights, "tf")
    dev = resolve_device(device)
    if dev.startswith("/GPU"):
        tf.config.experimental.enable_tensor_float32_execution(False)
    with tf.device(dev):
        module = graph_module(graph, params, tuple(spec.input_size))

    def forward(x: Any) -> dict[str, Any]:
        with tf.device(dev):
            return dict(module(x))

    forward.module = module  # type: ignore[attr-defined]
    forward.layout = "NHWC"  # type: ignore[attr-defined]
    forward.device = dev  # type: ignore[attr-defined]
    return forward
