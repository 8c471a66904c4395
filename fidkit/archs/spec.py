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
dense              in_features, out_features, bias                              weight, bias (if bias)
=================  ==========================================================  ==========================

``kernel`` and ``stride`` are (h, w); ``padding`` is ((top, bottom), (left, right)) in pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

OPS = frozenset(
    {"input", "channel_affine", "conv2d", "batchnorm", "relu", "maxpool2d", "avgpool2d",
     "concat", "global_avgpool", "flatten", "dense"}
)

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
        return shapes


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
        return self._add("channel_affine", name, (x,), scale=tuple(scale), shift=tuple(shift))

    def conv2d(self, name: str, x: str, in_channels: int, out_channels: int, kernel: Pair,
               stride: Pair = (1, 1), padding: Padding = ((0, 0), (0, 0)), bias: bool = False) -> str:
        return self._add("conv2d", name, (x,), in_channels=in_channels, out_channels=out_channels,
                         kernel=tuple(kernel), stride=tuple(stride), padding=padding, bias=bias)

    def batchnorm(self, name: str, x: str, channels: int, eps: float) -> str:
        return self._add("batchnorm", name, (x,), channels=channels, eps=eps)

    def relu(self, name: str, x: str) -> str:
        return self._add("relu", name, (x,))

    def maxpool2d(self, name: str, x: str, kernel: Pair, stride: Pair,
                  padding: Padding = ((0, 0), (0, 0))) -> str:
        return self._add("maxpool2d", name, (x,), kernel=tuple(kernel), stride=tuple(stride), padding=padding)

    def avgpool2d(self, name: str, x: str, kernel: Pair, stride: Pair,
                  padding: Padding = ((0, 0), (0, 0)), count_include_pad: bool = False) -> str:
        return self._add("avgpool2d", name, (x,), kernel=tuple(kernel), stride=tuple(stride),
                         padding=padding, count_include_pad=count_include_pad)

    def concat(self, name: str, xs: list[str]) -> str:
        return self._add("concat", name, tuple(xs))

    def global_avgpool(self, name: str, x: str) -> str:
        return self._add("global_avgpool", name, (x,))

    def flatten(self, name: str, x: str) -> str:
        return self._add("flatten", name, (x,))

    def dense(self, name: str, x: str, in_features: int, out_features: int, bias: bool = True) -> str:
        return self._add("dense", name, (x,), in_features=in_features, out_features=out_features, bias=bias)

    def build(self, **outputs: str) -> Graph:
        """Returns the graph with the given named outputs, e.g. build(features='pool', logits='fc')."""
        for key, node in outputs.items():
            if node not in self._names:
                raise ValueError(f"graph {self.name!r}: output {key!r} names unknown node {node!r}")
        return Graph(self.name, tuple(self._nodes), MappingProxyType(dict(outputs)))
