"""Extractors made from a user's own model: a torch module, a Keras model or a JAX function.

Each adapter returns a `fidkit.extraction.Extractor` whose network stage is the user's model, behind
the runtime's own preprocess stage: usable wherever a built-in one is (the pipeline, `fidkit.stats`,
the CLI through ``--extractor module:attribute``), taking the same inputs (numpy or the runtime's
tensors, any layout, 1-4 channels, uint8 or float with a range). The framework is imported only in
``fidkit/backends/<runtime>/adapters.py``, reached by name when a model of that framework is adapted.

What the preprocess does to a batch (after the colour and value-range rules of `fidkit.image_rules`),
in this order, on the runtime's device:

1. resize to ``input_size`` with the resize policy ``policy`` (its geometry only, skipped when the
   size already matches); the policy's own mean/std are *not* applied, the model's input convention
   below replaces them;
2. ``channels=1``: luminance with the ITU-R BT.601-2 weights (0.299, 0.587, 0.114) of PIL's
   ``convert("L")``, as the built-in ``mnist`` extractor does; ``channels=3``: RGB unchanged;
3. map 0..255 linearly onto ``input_range`` (``(0, 1)`` for ``ToTensor``-style models, ``(-1, 1)`` for
   tanh-style ones), then, if given, ``(x - mean) / std`` per channel on that scale (torchvision's
   ``Normalize`` convention);
4. transpose to ``layout`` ("NCHW" for torch by default, "NHWC" for Keras and JAX) and run the model;
   the chosen layer's output, flattened to (N, d), is the features; an optional second layer gives the
   logits (for the Inception Score).

The user-chosen ``name`` and a weights digest go into the statistics' provenance, so that statistics
from different models (or different weights of one model) are never compared silently. With
``weights_sha256=None`` the digest is computed from the model's parameters (names, shapes, dtypes and
values: `parameters_sha256`); pass the SHA-256 of your checkpoint file instead to make it checkable
against the file you publish.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FidkitError, InputError
from .extraction import Extractor, InputConvention, assemble
from .image_rules import LUMA_RGB
from .registry import ExtractorSpec, available_extractors, backend, load_object
from .resize import get_policy

#: The resize policy adapters use unless told otherwise (clean-fid's, Parmar et al., CVPR 2022).
DEFAULT_POLICY = "clean"


def parameters_sha256(named_arrays: Iterable[tuple[str, Any]]) -> str:
    """Returns the SHA-256 of named parameter arrays: names, dtypes, shapes and bytes, in name order.

    Raises `InputError` when there is nothing to digest.
    """
    h = hashlib.sha256(b"fidkit-parameters-v1\0")
    items = sorted(((str(k), np.asarray(v)) for k, v in named_arrays), key=lambda kv: kv[0])
    if not items:
        raise InputError("the model has no parameters to digest; pass weights_sha256= explicitly")
    for key, arr in items:
        arr = np.ascontiguousarray(arr)
        h.update(f"{key}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"an adapted extractor needs a name (recorded in the statistics), received "
                         f"{name!r}; pass name='my-classifier-v1'")
    if name in available_extractors():
        raise InputError(f"name {name!r} is a built-in extractor; choose another name for your model "
                         f"(e.g. {name + '-custom'!r}) so statistics of the two are never mixed up")
    return name


def _check_digest(digest: str | None) -> str | None:
    if digest is None:
        return None
    d = str(digest).lower()
    if len(d) != 64 or any(c not in "0123456789abcdef" for c in d):
        raise InputError(f"weights_sha256 must be 64 hex digits (the SHA-256 of the weights), "
                         f"received {digest!r}")
    return d


def _in_memory(*, spec: ExtractorSpec, **_: Any) -> Any:
    """Raises: an adapted model lives in memory and cannot be rebuilt from its spec."""
    raise FidkitError(f"extractor {spec.name!r} wraps a model in memory (fidkit.adapters); use the "
                      f"Extractor object itself, or --extractor module:attribute on the command line")


def make_extractor(*, name: str, runtime: str, convention: InputConvention, policy: str = DEFAULT_POLICY,
                   run: Callable[[Any], Mapping[str, Any]], weights_sha256: str | None,
                   weights_source: str, device: str = "cpu", description: str = "",
                   extra: Mapping[str, Any] | None = None) -> Extractor:
    """Returns an Extractor: the runtime's preprocess for ``policy`` and ``convention``, then ``run``
    (the model: its input tensor -> {'features', 'logits'?} as (N, d) tensors of the runtime).

    The widths come from one pass on a mid-grey batch of two images at ``input_size``; raises
    `InputError` when the model does not return one row per image.
    """
    name = _check_name(name)
    digest = _check_digest(weights_sha256)
    pol = get_policy(policy)
    rt = backend(runtime)
    h, w = convention.input_size
    x = rt.preprocess(pol, convention, device)(np.full((2, h, w, 3), 128, dtype=np.uint8), layout="NHWC",
                                               value_range=(0.0, 255.0), name=f"adapter {name!r} probe")
    probe = {key: rt.to_host(value) for key, value in dict(run(x)).items()}
    if "features" not in probe:
        raise FidkitError(f"adapter {name!r}: the model returned {sorted(probe)}, no features")
    for key, arr in probe.items():
        if arr.ndim != 2 or arr.shape[0] != 2 or arr.shape[1] == 0:
            raise InputError(f"adapter {name!r}: {key} of a batch of 2 images has shape {arr.shape}; "
                             f"expected (2, d) with d > 0 (one row per image)")
    spec = ExtractorSpec(
        name=name, feature_dim=int(probe["features"].shape[1]),
        logits_dim=int(probe["logits"].shape[1]) if "logits" in probe else None,
        input_size=convention.input_size, policy=pol.name,
        builders={runtime: "fidkit.adapters:_in_memory"},
        description=description or f"user model via the {runtime} adapter: {pol.name} resize to "
                                   f"{convention.describe()}",
        extra=dict(extra or {}, convention=convention.describe()))
    return assemble(spec, runtime, device, pol, convention, run, weights_sha256=digest,
                    weights_source=weights_source)


def _runner(runtime: str, name: str) -> Callable[..., Any]:
    """Returns ``fidkit.backends.<runtime>.adapters.<name>``, reached by name (no static import)."""
    return load_object(f"fidkit.backends.{runtime}.adapters:{name}")


def from_torch(module: Any, layer: str, *, name: str, logits_layer: str | None = None,
               input_size: tuple[int, int], policy: str = DEFAULT_POLICY, channels: int = 3,
               input_range: tuple[float, float] = (0.0, 1.0), mean: tuple[float, ...] | None = None,
               std: tuple[float, ...] | None = None, layout: str = "NCHW",
               weights_sha256: str | None = None, device: str | None = None) -> Extractor:
    """Returns an extractor reading the output of ``module``'s submodule ``layer`` (a forward hook).

    ``layer`` is a dotted path as in ``module.get_submodule`` (``"features.4"``, ``"fc1"``; ``""`` is
    the module's own output). The module runs in eval mode under ``no_grad`` on its own device (or
    ``device``) and its training flag is restored afterwards. Defaults suit a ``ToTensor`` model:
    NCHW on [0, 1]; the preprocessing is described in this module's docstring.
    """
    conv = InputConvention(input_size, channels, input_range, mean, std, layout)
    run, digest, dev = _runner("torch", "torch_runner")(module, layer, logits_layer, device)
    return make_extractor(
        name=name, runtime="torch", convention=conv, policy=policy, run=run, device=dev,
        weights_sha256=weights_sha256 or digest,
        weights_source="weights_sha256 argument" if weights_sha256 else "parameters_sha256(state_dict)",
        extra={"adapter": "torch", "layer": layer, "logits_layer": logits_layer})


def from_keras(model: Any, layer_name: str, *, name: str, logits_layer: str | None = None,
               input_size: tuple[int, int] | None = None, policy: str = DEFAULT_POLICY,
               channels: int | None = None, input_range: tuple[float, float] = (0.0, 1.0),
               mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
               weights_sha256: str | None = None) -> Extractor:
    """Returns an extractor reading the output of Keras layer ``layer_name`` (``""``: the model's output).

    The model must be built (functional or Sequential with a known input shape); a sub-model
    ``keras.Model(model.inputs, layer.output)`` is run with ``training=False``. ``input_size`` and
    ``channels`` default to the model's input shape (NHWC).
    """
    run, digest, runtime, shape = _runner("tf", "keras_runner")(model, layer_name, logits_layer)
    size = input_size if input_size is not None else shape[:2]
    if size is None or None in tuple(size):
        raise InputError(f"adapter {name!r}: the Keras model's input shape {shape} does not fix the "
                         f"image size; pass input_size=(height, width)")
    conv = InputConvention(tuple(size), channels or shape[2] or 3, input_range, mean, std, "NHWC")
    return make_extractor(
        name=name, runtime=runtime, convention=conv, policy=policy, run=run, weights_sha256=weights_sha256 or digest,
        weights_source="weights_sha256 argument" if weights_sha256 else "parameters_sha256(model.weights)",
        extra={"adapter": "keras", "layer": layer_name, "logits_layer": logits_layer})


def from_jax(fn: Callable[..., Any], params: Any = None, *, name: str, input_size: tuple[int, int],
             policy: str = DEFAULT_POLICY, channels: int = 3, input_range: tuple[float, float] = (0.0, 1.0),
             mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
             layout: str = "NHWC", weights_sha256: str | None = None, jit: bool = True) -> Extractor:
    """Returns an extractor around a JAX function: ``fn(params, x)`` (or ``fn(x)`` when params is None).

    ``fn`` returns the features (N, ...) , a pair (features, logits), or a mapping with 'features' and
    optionally 'logits'. It is wrapped in ``jax.jit`` unless ``jit=False``. Without params (a closure)
    and without ``weights_sha256`` the provenance's weights digest stays unknown.
    """
    conv = InputConvention(input_size, channels, input_range, mean, std, layout)
    run, digest = _runner("jax", "jax_runner")(fn, params, jit)
    return make_extractor(
        name=name, runtime="jax", convention=conv, policy=policy, run=run, weights_sha256=weights_sha256 or digest,
        weights_source=("weights_sha256 argument" if weights_sha256 else
                        "parameters_sha256(params)" if digest else "unknown"),
        extra={"adapter": "jax"})


def _load_file_object(ref: str) -> Any:
    path_str, _, attr = ref.rpartition(":")
    path = Path(path_str)
    if not path.is_file():
        raise InputError(f"{path}: no such Python file (from {ref!r}); expected 'file.py:attribute'")
    mod_name = f"fidkit_user_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"{path}: cannot be imported as a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return _attribute(mod, attr, str(path), ref)


def _attribute(obj: Any, attr: str, where: str, ref: str) -> Any:
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(obj) if not n.startswith("_"))[:12]
            raise InputError(f"--extractor {ref}: {where} has no attribute {part!r}; it has "
                             f"{', '.join(names) or 'no public names'}")
        obj = getattr(obj, part)
    return obj


def _load_module_object(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:  # the current folder is importable, as for `python -m`
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"--extractor {ref}: cannot import {module!r} ({exc}); expected "
                         f"'package.module:attribute' importable from {cwd} or 'path/to/file.py:attribute'"
                         ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    return _attribute(mod, attr, f"module {module!r}", ref)


#: What the command line can hand a user's ``build`` function, by parameter name.
BUILD_OPTIONS = {"runtime": "--runtime", "device": "--device", "weights": "--weights", "policy": "--resize"}


def load_extractor(ref: str, *, runtime: str | None = None, device: str | None = None,
                   weights: str | None = None, policy: str | None = None) -> Extractor:
    """Returns the extractor named by ``"package.module:attribute"`` or ``"path/to/file.py:attribute"``.

    The attribute is an `Extractor` or a callable returning one (so the model is built only when asked
    for). This is what the CLI's ``--extractor module:attribute`` uses; the current folder is importable.
    The options reach the model or are refused, never ignored: each one the callable takes as a keyword
    parameter (``runtime``, ``device``, ``weights``, ``policy``) is passed to it; ``policy`` is otherwise
    applied to the built extractor's preprocess (`Extractor.with_policy`); ``runtime`` equal to the
    model's own is accepted. Raises `InputError` naming the option (`BUILD_OPTIONS`) that cannot be
    applied, and for a reference that cannot be loaded.
    """
    if not isinstance(ref, str) or ":" not in ref:
        raise InputError(f"--extractor {ref!r} is not of the form 'package.module:attribute' or "
                         f"'file.py:attribute'")
    obj = _load_file_object(ref) if ref.rpartition(":")[0].endswith(".py") else _load_module_object(ref)
    given = {k: v for k, v in (("runtime", runtime), ("device", device), ("weights", weights),
                               ("policy", policy)) if v is not None}
    passed: dict[str, Any] = {}
    if not isinstance(obj, Extractor) and callable(obj):
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            params = {}
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        passed = {k: v for k, v in given.items() if takes_all or k in params}
        obj = obj(**passed)
    if not isinstance(obj, Extractor):
        raise InputError(f"--extractor {ref}: gives a {type(obj).__name__}, expected a fidkit Extractor "
                         f"(or a function returning one, e.g. made with fidkit.adapters.from_torch)")
    for key, value in given.items():
        if key in passed:
            # a function that takes the option must honour it: a policy it drops would be recorded
            # as asked while another one ran (runtime likewise; devices are the model's to name)
            got = obj.policy.name if key == "policy" else obj.runtime if key == "runtime" else None
            want = get_policy(value).name if key == "policy" else value
            if got is not None and got != want:
                raise InputError(f"{BUILD_OPTIONS[key]} {value}: --extractor {ref} was given {key}="
                                 f"{value!r} but built an extractor with {key} {got!r}; its function "
                                 f"must use the {key} it is given")
            continue
        if key == "policy":
            obj = obj.with_policy(value)
        elif key == "runtime" and value == obj.runtime:
            continue
        else:
            raise InputError(f"{BUILD_OPTIONS[key]} {value}: --extractor {ref} builds its own model "
                             f"({obj.runtime}, {obj.device}) and its function takes no {key!r} "
                             f"parameter; add one to apply {BUILD_OPTIONS[key]}, or drop it")
    return obj


__all__ = ["DEFAULT_POLICY", "InputConvention", "LUMA_RGB", "from_jax", "from_keras",
           "from_torch", "load_extractor", "make_extractor", "parameters_sha256"]
