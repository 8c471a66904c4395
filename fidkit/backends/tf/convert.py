"""Converter from TensorFlow's frozen 2015 Inception graph to canonical weights.

``inception-2015-12-05.tgz`` holds ``classify_image_graph_def.pb``, the frozen GraphDef used by TTUR's
reference FID code. Each conv block is a scope (``mixed_9/tower/mixed/conv``) with the Const nodes
``conv2d_params`` (HWIO kernel), ``batchnorm/beta``, ``batchnorm/gamma``, ``batchnorm/moving_mean`` and
``batchnorm/moving_variance``; the classifier is ``softmax/weights`` (in, out) and ``softmax/biases``.
Kernels are transposed to PyTorch layouts. ``bn.weight`` is ``gamma`` where the graph's
``BatchNormWithGlobalNormalization`` node scales by it, and 1 where it does not (``scale_after_normalization``
false), so the canonical file computes what TensorFlow computes.

tensorflow is imported inside the functions only.
"""

from __future__ import annotations

import tarfile
from typing import Any

import numpy as np

from ...archs.inception import BN_EPS
from ...errors import WeightsError
from ...registry import import_runtime
from ...weights import TF2015_SCOPES

#: The member of the .tgz that holds the graph.
GRAPH_MEMBER = "classify_image_graph_def.pb"
_BN_OP = "BatchNormWithGlobalNormalization"


def _tf() -> Any:
    return import_runtime("tf", "converting the TensorFlow graph")


def _read_graph_bytes(path: str) -> bytes:
    if not tarfile.is_tarfile(path):
        with open(path, "rb") as f:
            return f.read()
    try:
        with tarfile.open(path, "r:*") as tar:
            member = next((m for m in tar.getmembers()
                           if m.isfile() and m.name.rsplit("/", 1)[-1] == GRAPH_MEMBER), None)
            if member is None:
                raise WeightsError(f"{path}: has no {GRAPH_MEMBER}; expected TensorFlow's "
                                   f"inception-2015-12-05.tgz")
            f = tar.extractfile(member)
            if f is None:
                raise WeightsError(f"{path}: cannot read {member.name}; the archive may be corrupt")
            return f.read()
    except WeightsError:
        raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise WeightsError(f"{path}: cannot read the archive ({type(exc).__name__}); it may be truncated — "
                           f"download it again") from None


def graph_consts(path: str) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Returns (Const node name -> array, node name -> NodeDef) of a GraphDef ``.pb`` or its ``.tgz``."""
    tf = _tf()
    graph_def = tf.compat.v1.GraphDef()
    data = _read_graph_bytes(path)
    try:
        graph_def.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError is not exported in a stable place
        raise WeightsError(f"{path}: not a TensorFlow GraphDef ({type(exc).__name__}); expected "
                           f"{GRAPH_MEMBER} or inception-2015-12-05.tgz") from None
    consts = {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in graph_def.node if n.op == "Const"}
    nodes = {n.name: n for n in graph_def.node}
    return consts, nodes


def from_graphdef(path: str) -> dict[str, np.ndarray]:
    """Returns the canonical arrays of ``classify_image_graph_def.pb`` or ``inception-2015-12-05.tgz``."""
    consts, nodes = graph_consts(path)

    def get(name: str) -> np.ndarray:
        if name not in consts:
            raise WeightsError(f"{path}: Const node {name!r} is missing; expected the 2015 Inception graph "
                               f"(classify_image_graph_def.pb)")
        return consts[name]

    out: dict[str, np.ndarray] = {}
    for scope, node in TF2015_SCOPES.items():
        out[f"{node}.conv.weight"] = get(f"{scope}/conv2d_params").transpose(3, 2, 0, 1)
        bn = nodes.get(f"{scope}/batchnorm")
        is_bn = bn is not None and bn.op == _BN_OP
        if is_bn and "variance_epsilon" in bn.attr and not np.isclose(bn.attr["variance_epsilon"].f, BN_EPS):
            raise WeightsError(f"{path}: {scope}/batchnorm has variance_epsilon "
                               f"{bn.attr['variance_epsilon'].f}, the 2015 graph (and fidkit's) uses {BN_EPS}; "
                               f"this is another network")
        scaled = not is_bn or "scale_after_normalization" not in bn.attr or bn.attr["scale_after_normalization"].b
        beta = get(f"{scope}/batchnorm/beta")
        out[f"{node}.bn.weight"] = get(f"{scope}/batchnorm/gamma") if scaled else np.ones_like(beta)
        out[f"{node}.bn.bias"] = beta
        out[f"{node}.bn.running_mean"] = get(f"{scope}/batchnorm/moving_mean")
        out[f"{node}.bn.running_var"] = get(f"{scope}/batchnorm/moving_variance")
    out["fc.weight"] = get("softmax/weights").T
    out["fc.bias"] = get("softmax/biases")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
