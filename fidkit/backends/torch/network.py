"""The torch interpreter of `fidkit.archs.spec.Graph`: an ``nn.Module`` in eval mode, NCHW, float32, TF32 off.

The extractor runs it in the channels_last memory format (logically NCHW).

Parameter nodes become real ``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.Linear`` modules nested at their
dotted node names, so ``module.state_dict()`` keys are the canonical parameter names (plus BatchNorm's
``num_batches_tracked``): the pytorch-fid and torchvision state dicts load into it unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ...archs.spec import OPS, Graph, Node, pos_embed_matrices
from ...errors import InputError, WeightsError
from ...registry import import_runtime, parse_device, pick_gpu
from ..common import graph_and_params

if TYPE_CHECKING:
    import torch

    from ...registry import ExtractorSpec
    from ...weights import CanonicalWeights


def _torch() -> Any:
    return import_runtime("torch", "the torch runtime")


#: The token ops (vision transformers), run by `_token_op`.
_TOKEN_OPS = OPS - {"input", "channel_affine", "conv2d", "batchnorm", "relu", "maxpool2d", "avgpool2d",
                    "concat", "global_avgpool", "flatten", "dense"}


def resolve_device(device: str) -> torch.device:
    """Returns the torch device for 'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when visible, else CPU)."""
    torch = _torch()
    count = 0 if parse_device(device)[0] == "cpu" else torch.cuda.device_count()
    gpu = pick_gpu(device, [f"cuda:{i}" for i in range(count)], "torch")
    return torch.device("cpu" if gpu is None else gpu)


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Disables TF32 in cuDNN convolutions and CUDA matmuls for the duration, then restores the flags.

    Uses the ``fp32_precision`` API where torch has it: torch refuses to read the legacy ``allow_tf32``
    flags once a user has set the new ones, so the new API is the one that works in both cases.
    """
    torch = _torch()
    b = torch.backends
    if hasattr(b.cuda.matmul, "fp32_precision") and hasattr(b.cudnn, "conv"):
        flags = [(b.cuda.matmul, "fp32_precision"), (b.cudnn.conv, "fp32_precision"),
                 (b.cudnn.rnn, "fp32_precision")]
        off = "ieee"
    else:
        flags = [(b.cuda.matmul, "allow_tf32"), (b.cudnn, "allow_tf32")]
        off = False
    saved = [getattr(obj, attr) for obj, attr in flags]
    for obj, attr in flags:
        setattr(obj, attr, off)
    try:
        yield
    finally:
        for (obj, attr), value in zip(flags, saved, strict=True):
            setattr(obj, attr, value)


def _symmetric(padding: Any) -> tuple[int, int] | None:
    (t, b), (lft, r) = padding
    return (t, lft) if (t == b and lft == r) else None


def _module_for(node: Node) -> Any:
    nn = _torch().nn
    a = node.attrs
    if node.op == "conv2d":
        pad = _symmetric(a["padding"]) or (0, 0)
        return nn.Conv2d(a["in_channels"], a["out_channels"], tuple(a["kernel"]), tuple(a["stride"]),
                         pad, bias=a["bias"])
    if node.op == "batchnorm":
        return nn.BatchNorm2d(a["channels"], eps=a["eps"])
    if node.op == "dense":
        return nn.Linear(a["in_features"], a["out_features"], bias=a["bias"])
    return _token_module_for(node)


def _token_module_for(node: Node) -> Any:
    """Returns the module holding a token op's parameters (canonical names), or None for the others."""
    torch = _torch()
    nn = torch.nn
    a = node.attrs
    if node.op == "linear":
        return nn.Linear(a["in_features"], a["out_features"], bias=a["bias"])
    if node.op == "layernorm":
        return nn.LayerNorm(a["dim"], eps=a["eps"])
    shapes = {k.rpartition(".")[2]: v for k, v in Graph("node", (node,), {}).param_shapes().items()}
    if not shapes:
        return None
    holder = nn.Module()
    for param, shape in shapes.items():
        holder.register_parameter(param, nn.Parameter(torch.zeros(shape)))
    if node.op == "pos_embed":
        ah, aw = pos_embed_matrices(a)
        holder.register_buffer("ah", torch.from_numpy(ah.astype(np.float32)), persistent=False)
        holder.register_buffer("aw", torch.from_numpy(aw.astype(np.float32)), persistent=False)
    return holder


def _token_op(torch: Any, node: Node, xs: Any, module: Any) -> torch.Tensor:
    """Returns the output of a token op (`fidkit.archs.spec`), or raises for an unknown op."""
    F = torch.nn.functional
    op, a, x = node.op, node.attrs, xs[0]
    if op == "tokens":
        return torch.flatten(x, 2).transpose(1, 2)
    if op == "insert_tokens":
        value = module.value.expand(x.shape[0], -1, -1)
        return torch.cat([x[:, :a["at"]], value, x[:, a["at"]:]], dim=1)
    if op == "pos_embed":
        (gh, gw), (mh, mw), prefix = a["grid"], a["table_grid"], a["prefix"]
        table = module.value[0]
        grid = table[prefix:].reshape(mh, mw, -1)
        if (gh, gw) != (mh, mw):
            grid = torch.einsum("hm,wn,mnd->hwd", module.ah, module.aw, grid)
        return x + torch.cat([table[:prefix], grid.reshape(gh * gw, -1)])[None]
    if op in ("layernorm", "linear"):
        return module(x)
    if op == "attention":
        n, t, _ = x.shape
        dim, heads = a["dim"], a["heads"]
        q, k, v = x.reshape(n, t, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        # torch's fused kernel (flash attention on CPU, float32 throughout; TF32 is off): the same
        # softmax(q k^T / sqrt(hd)) v, summed in another order, without the (T, T) weights in memory
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, dim)
    if op == "gelu":
        return F.gelu(x, approximate=a["approximate"])
    if op == "quick_gelu":
        return x * torch.sigmoid(1.702 * x)
    if op == "swiglu":
        x1, x2 = x.chunk(2, dim=-1)
        return F.silu(x1) * x2
    if op == "layerscale":
        return x * module.gamma
    if op == "add":
        return x + xs[1]
    if op == "l2_normalize":
        return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    if op == "select_token":
        return x[:, a["index"]]
    if op == "flatten_hwc":  # NCHW: the channel slice, then TF's NHWC order
        return x[:, :a["channels"]].permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    raise InputError(f"node {node.name!r} has op {op!r}, which the torch runtime does not implement")


def _pad(x: torch.Tensor, padding: Any, value: float) -> torch.Tensor:
    (t, b), (lft, r) = padding
    return _torch().nn.functional.pad(x, (lft, r, t, b), value=value)


def _pool(F: Any, node: Node, x: torch.Tensor) -> torch.Tensor:
    a = node.attrs
    k, s = tuple(a["kernel"]), tuple(a["stride"])
    sym = _symmetric(a["padding"])
    native = sym is not None and sym[0] <= k[0] // 2 and sym[1] <= k[1] // 2
    if node.op == "maxpool2d":
        if native:
            return F.max_pool2d(x, k, s, sym)
        return F.max_pool2d(_pad(x, a["padding"], float("-inf")), k, s)
    if native:
        return F.avg_pool2d(x, k, s, sym, count_include_pad=a["count_include_pad"])
    total = F.avg_pool2d(_pad(x, a["padding"], 0.0), k, s) * (k[0] * k[1])
    if a["count_include_pad"]:
        return total / (k[0] * k[1])
    ones = _pad(x.new_ones((1, 1, *x.shape[2:])), a["padding"], 0.0)
    return total / (F.avg_pool2d(ones, k, s) * (k[0] * k[1]))


def graph_module(graph: Graph) -> torch.nn.Module:
    """Returns an ``nn.Module`` running ``graph`` (NCHW in, dict of named outputs out), parameters unset."""
    torch = _torch()
    F = torch.nn.functional

    class GraphModule(torch.nn.Module):
        """Runs a fidkit graph; submodules sit at the dotted node names of the parameter nodes."""

        def __init__(self) -> None:
            super().__init__()
            self.graph = graph
            for node in graph.nodes:
                mod = _module_for(node)
                if mod is None:
                    continue
                *path, leaf = node.name.split(".")
                parent: torch.nn.Module = self
                for part in path:
                    if not hasattr(parent, part):
                        parent.add_module(part, torch.nn.Module())
                    parent = getattr(parent, part)
                parent.add_module(leaf, mod)
            self._modules_by_node = {n.name: self.get_submodule(n.name) for n in graph.nodes
                                     if _module_for(n) is not None}
            self._last_use = {i: n.name for n in graph.nodes for i in n.inputs}
            self._wanted = set(graph.outputs.values())
            readers: dict[str, int] = {}
            for n in graph.nodes:
                for i in n.inputs:
                    readers[i] = readers.get(i, 0) + 1
            # a ReLU may overwrite its input when nothing else reads it (saves a pass over memory)
            self._inplace = {n.name for n in graph.nodes if n.op == "relu"
                             and readers[n.inputs[0]] == 1 and n.inputs[0] not in self._wanted
                             and n.inputs[0] != "input"}

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            values: dict[str, torch.Tensor] = {}
            for node in self.graph.nodes:
                values[node.name] = self._node(node, x if node.op == "input"
                                               else [values[i] for i in node.inputs])
                for i in node.inputs:
                    if self._last_use[i] == node.name and i not in self._wanted:
                        del values[i]
            return {key: values[name] for key, name in self.graph.outputs.items()}

        def _node(self, node: Node, xs: Any) -> torch.Tensor:
            op, a = node.op, node.attrs
            if op == "input":
                return xs
            x = xs[0]
            if op == "channel_affine":
                scale = x.new_tensor(a["scale"]).view(1, -1, 1, 1)
                return x * scale + x.new_tensor(a["shift"]).view(1, -1, 1, 1)
            if op == "conv2d":
                if _symmetric(a["padding"]) is None:
                    x = _pad(x, a["padding"], 0.0)
                return self._modules_by_node[node.name](x)
            if op in ("batchnorm", "dense"):
                return self._modules_by_node[node.name](x)
            if op == "relu":
                return F.relu(x, inplace=node.name in self._inplace)
            if op in ("maxpool2d", "avgpool2d"):
                return _pool(F, node, x)
            if op == "concat":
                return torch.cat(xs, dim=1)
            if op == "global_avgpool":
                return x.mean(dim=(2, 3))
            if op == "flatten":
                return torch.flatten(x, 1)
            if op in _TOKEN_OPS:
                return _token_op(torch, node, xs, self._modules_by_node.get(node.name))
            raise InputError(f"graph {self.graph.name!r}: node {node.name!r} has op {op!r}, which the "
                             f"torch runtime does not implement")

    return GraphModule()


def load_module(graph: Graph, params: Mapping[str, np.ndarray], where: str = "weights") -> torch.nn.Module:
    """Returns `graph_module(graph)` with ``params`` (canonical names, torch layouts) loaded, in eval mode."""
    torch = _torch()
    module = graph_module(graph)
    state = {k: torch.from_numpy(np.ascontiguousarray(params[k], dtype=np.float32))
             for k in graph.param_shapes()}
    missing, _ = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(f"{where}: no value for {missing[0]!r} needed by graph {graph.name!r}; "
                           f"convert the checkpoint with `fidkit weights convert`")
    return module.eval().requires_grad_(False)


def network(*, spec: ExtractorSpec, weights: CanonicalWeights | None, device: str) -> Any:
    """Returns the torch network stage of ``spec``: a normalised float32 NCHW tensor on ``device`` ->
    {'features', 'logits'} float32 tensors there (inference mode, TF32 off)."""
    torch = _torch()
    graph, params = graph_and_params(spec, weights, "torch")
    dev = resolve_device(device)
    # channels_last: oneDNN and cuDNN run NHWC convolutions without reordering each layer (~30% less CPU
    # time on Inception); the tensors stay logically NCHW, so results and state_dict are unchanged.
    cl = torch.channels_last
    module = load_module(graph, params, str(weights.path)).to(dev, memory_format=cl)

    def forward(x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.inference_mode(), no_tf32():
            return dict(module(x.contiguous(memory_format=cl)))

    forward.module = module  # type: ignore[attr-defined]
    forward.layout = "NCHW"  # type: ignore[attr-defined]
    forward.device = str(dev)  # type: ignore[attr-defined]
    return forward
