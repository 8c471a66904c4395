"""Extractors made from a user's own model: a torch module, a Keras model or a JAX function.

Each adapter returns a `fidkit.registry.Extractor`, usable wherever a built-in one is (the pipeline,
`fidkit.stats`, the CLI through ``--extractor module:attribute``). The framework is imported only in
``fidkit/backends/<runtime>/adapters.py``, when a model of that framework is adapted.

What an adapter does to a batch of float32 NHWC RGB images on the 0..255 scale, in this order:

1. resize to ``input_size`` with the resize policy ``policy`` (its geometry only: `fidkit.resize.resize`,
   skipped when the size already matches); the policy's own mean/std are *not* applied, the model's
   input convention below replaces them;
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
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FidkitError, InputError
from .registry import Extractor, ExtractorSpec, available_extractors, load_object

#: ITU-R BT.601-2 luma weights (R, G, B), as in PIL's ``Image.convert("L")``.
LUMA_RGB = (0.299, 0.587, 0.114)
#: The resize policy adapters use unless told otherwise (clean-fid's, Parmar et al., CVPR 2022).
DEFAULT_POLICY = "clean"
_LAYOUTS = ("NHWC", "NCHW")


@dataclass(frozen=True)
class InputConvention:
    """How a model wants its input: size, resize policy, channels, value range, normalisation, layout."""

    input_size: tuple[int, int]
    policy: str = DEFAULT_POLICY
    channels: int = 3
    input_range: tuple[float, float] = (0.0, 255.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str = "NHWC"

    def __post_init__(self) -> None:
        size = tuple(self.input_size)
        if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
            raise InputError(f"input_size must be (height, width) in pixels, received {self.input_size!r}")
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        if self.channels not in (1, 3):
            raise InputError(f"channels must be 1 (luminance) or 3 (RGB), received {self.channels!r}")
        lo, hi = (float(v) for v in self.input_range)
        if not np.isfinite([lo, hi]).all() or lo == hi:
            raise InputError(f"input_range must be two different finite numbers (lo, hi), "
                             f"received {self.input_range!r}")
        object.__setattr__(self, "input_range", (lo, hi))
        if self.layout not in _LAYOUTS:
            raise InputError(f"layout must be one of {_LAYOUTS}, received {self.layout!r}")
        for label in ("mean", "std"):
            v = getattr(self, label)
            if v is None:
                continue
            v = tuple(float(x) for x in np.atleast_1d(np.asarray(v, dtype=np.float64)))
            if len(v) not in (1, self.channels):
                raise InputError(f"{label} must have 1 or {self.channels} values (one per channel), "
                                 f"received {len(v)}")
            object.__setattr__(self, label, v)
        if (self.mean is None) != (self.std is None):
            raise InputError("give mean and std together (the model's Normalize), or neither")
        if self.std is not None and min(self.std) <= 0:
            raise InputError(f"std must be positive, received {self.std!r}")
        from .resize import get_policy

        get_policy(self.policy)

    def describe(self) -> str:
        """Returns a one-line account of the preprocessing, for the spec's description."""
        lo, hi = self.input_range
        norm = "" if self.mean is None else f", then (x - {self.mean}) / {self.std}"
        colour = "luminance (BT.601)" if self.channels == 1 else "RGB"
        h, w = self.input_size
        return (f"resize to {h}x{w} ({self.policy}), {colour}, 0..255 -> [{lo:g}, {hi:g}]{norm}, "
                f"{self.layout}")

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Returns the model input (float32, in ``layout``) for float32 NHWC RGB images on 0..255."""
        from .resize import resize

        x = np.asarray(images, dtype=np.float32)
        if tuple(x.shape[1:3]) != self.input_size:
            x = resize(x, self.policy, self.input_size)
        if self.channels == 1:
            x = x @ np.asarray(LUMA_RGB, dtype=np.float32)[:, None]
        lo, hi = self.input_range
        if (lo, hi) != (0.0, 255.0):
            x = x * np.float32((hi - lo) / 255.0) + np.float32(lo)
        if self.mean is not None:
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)


def parameters_sha256(named_arrays: Iterable[tuple[str, Any]]) -> str:
    """Returns the SHA-256 of named parameter arrays: names, dtypes, shapes and bytes, in name order."""
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


def make_extractor(*, name: str, runtime: str, convention: InputConvention,
                   run: Callable[[np.ndarray], Mapping[str, np.ndarray]], weights_sha256: str | None,
                   weights_source: str, device: str = "cpu", description: str = "",
                   extra: Mapping[str, Any] | None = None) -> Extractor:
    """Returns an Extractor around ``run`` (model input -> {'features', 'logits'?}), probing its widths.

    The widths come from one forward pass on a mid-grey batch of two images at ``input_size``.
    """
    from .resize import get_policy

    name = _check_name(name)
    digest = _check_digest(weights_sha256)

    def forward(images: np.ndarray) -> dict[str, np.ndarray]:
        out = run(convention.apply(images))
        result = {}
        for key, arr in out.items():
            arr = np.asarray(arr)
            result[key] = arr.reshape(arr.shape[0], -1)
        return result

    h, w = convention.input_size
    probe = forward(np.full((2, h, w, 3), 127.5, dtype=np.float32))
    if "features" not in probe:
        raise FidkitError(f"adapter {name!r}: the model returned {sorted(probe)}, no features")
    for key, arr in probe.items():
        if arr.shape[0] != 2 or arr.shape[1] == 0:
            raise InputError(f"adapter {name!r}: {key} of a batch of 2 images has shape {arr.shape}; "
                             f"expected (2, d) with d > 0 (one row per image)")
    spec = ExtractorSpec(
        name=name, feature_dim=int(probe["features"].shape[1]),
        logits_dim=int(probe["logits"].shape[1]) if "logits" in probe else None,
        input_size=convention.input_size, policy=convention.policy,
        builders={runtime: "fidkit.adapters:_in_memory"},
        description=description or f"user model via the {runtime} adapter: {convention.describe()}",
        extra=dict(extra or {}, convention=convention.describe()))
    return Extractor(spec, runtime, device, get_policy(convention.policy), digest, forward,
                     weights_source=weights_source)


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
    from .backends.torch.adapters import torch_runner

    conv = InputConvention(input_size, policy, channels, input_range, mean, std, layout)
    run, digest, dev = torch_runner(module, layer, logits_layer, device)
    return make_extractor(
        name=name, runtime="torch", convention=conv, run=run, device=dev,
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
    from .backends.tf.adapters import keras_runner

    run, digest, runtime, shape = keras_runner(model, layer_name, logits_layer)
    size = input_size if input_size is not None else shape[:2]
    if size is None or None in tuple(size):
        raise InputError(f"adapter {name!r}: the Keras model's input shape {shape} does not fix the "
                         f"image size; pass input_size=(height, width)")
    conv = InputConvention(tuple(size), policy, channels or shape[2] or 3, input_range, mean, std, "NHWC")
    return make_extractor(
        name=name, runtime=runtime, convention=conv, run=run, weights_sha256=weights_sha256 or digest,
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
    from .backends.jax.adapters import jax_runner

    conv = InputConvention(input_size, policy, channels, input_range, mean, std, layout)
    run, digest = jax_runner(fn, params, jit)
    return make_extractor(
        name=name, runtime="jax", convention=conv, run=run, weights_sha256=weights_sha256 or digest,
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
    obj: Any = mod
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_extractor(ref: str) -> Extractor:
    """Returns the extractor named by ``"package.module:attribute"`` or ``"path/to/file.py:attribute"``.

    The attribute is an `Extractor` or a callable taking no arguments that returns one (so the model is
    built only when asked for). This is what the CLI's ``--extractor module:attribute`` uses.
    """
    if not isinstance(ref, str) or ":" not in ref:
        raise InputError(f"{ref!r} is not of the form 'package.module:attribute' or 'file.py:attribute'")
    try:
        obj = _load_file_object(ref) if ref.rpartition(":")[0].endswith(".py") else load_object(ref)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"cannot load {ref!r} ({type(exc).__name__}: {exc}); expected "
                         f"'package.module:attribute' importable from here") from None
    if not isinstance(obj, Extractor) and callable(obj):
        obj = obj()
    if not isinstance(obj, Extractor):
        raise InputError(f"{ref!r} gives a {type(obj).__name__}, expected a fidkit Extractor (or a "
                         f"function returning one, e.g. made with fidkit.adapters.from_torch)")
    return obj


__all__ = ["DEFAULT_POLICY", "InputConvention", "LUMA_RGB", "from_jax", "from_keras",
           "from_torch", "load_extractor", "make_extractor", "parameters_sha256"]
