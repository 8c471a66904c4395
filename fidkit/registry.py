"""The extractor registry: names map to specs, specs to runtime implementations, imported only when used.

Built-in extractors are declared in `fidkit.extractors`; third parties register theirs through the
``fidkit.extractors`` entry-point group (a callable that calls `register_extractor`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import BackendUnavailableError, FidkitError, InputError

if TYPE_CHECKING:
    from .resize import ResizePolicy
    from .weights import CanonicalWeights

#: Runtime names in the order tried when the caller names none, and the module each needs.
#: ``numpy`` is the float64 reference interpreter of the core: slow, exact, always there.
RUNTIME_MODULES: Mapping[str, str] = MappingProxyType(
    {"torch": "torch", "jax": "jax", "tf": "tensorflow", "numpy": "numpy"})

Forward = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class ExtractorSpec:
    """What an extractor is, independent of the runtime that runs it.

    ``builders`` maps a runtime name to ``"module:function"``; the function is called as
    ``build(spec=..., weights=CanonicalWeights | None, device=str, policy=ResizePolicy)`` and returns a
    forward function: float32 NHWC RGB images on the 0..255 scale (any size, uniform within the batch)
    -> ``{"features": (N, feature_dim), "logits": (N, logits_dim)}`` as numpy arrays.
    """

    name: str
    feature_dim: int
    logits_dim: int | None
    input_size: tuple[int, int]
    policy: str
    builders: Mapping[str, str]
    weights: tuple[str, ...] = ()
    arch: str | None = None
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ExtractorSpec] = {}
_ENTRY_POINTS_LOADED = False


def register_extractor(spec: ExtractorSpec, *, replace: bool = False) -> ExtractorSpec:
    """Returns ``spec`` after adding it to the registry under ``spec.name``."""
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] != spec:
        raise FidkitError(f"extractor {spec.name!r} is already registered; pass replace=True to override it")
    unknown = set(spec.builders) - set(RUNTIME_MODULES)
    if unknown:
        raise FidkitError(f"extractor {spec.name!r}: unknown runtimes {sorted(unknown)}; "
                          f"expected some of {list(RUNTIME_MODULES)}")
    _REGISTRY[spec.name] = spec
    return spec


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from . import extractors  # noqa: F401  (registers the built-in extractors)

    for ep in entry_points(group="fidkit.extractors"):
        ep.load()()


def get_spec(name: str) -> ExtractorSpec:
    """Returns the registered spec called ``name``."""
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown extractor {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def available_extractors() -> list[str]:
    """Returns the names of all registered extractors, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def runtime_installed(runtime: str) -> bool:
    """Returns whether the runtime's framework can be imported, without importing it."""
    return importlib.util.find_spec(RUNTIME_MODULES[runtime]) is not None


def import_runtime(runtime: str, purpose: str) -> Any:
    """Returns the framework module of ``runtime``, or raises naming ``purpose`` and the extra to install."""
    module = RUNTIME_MODULES[runtime]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(f"{purpose} needs {module!r} ({exc}): "
                                      f"pip install 'fidkit[{runtime}]'") from None


def parse_device(device: str) -> tuple[str, int]:
    """Returns ``("cpu", 0)``, ``("auto", 0)`` or ``("gpu", index)`` for the ``--device`` values every
    runtime accepts: 'cpu', 'auto' (a GPU when one is visible, else the CPU), 'cuda' / 'gpu', 'cuda:N'."""
    if device in ("cpu", "auto"):
        return device, 0
    if device in ("cuda", "gpu"):
        return "gpu", 0
    head, _, index = device.partition(":")
    if head in ("cuda", "gpu") and index.isdigit():
        return "gpu", int(index)
    raise InputError(f"unknown device {device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'")


def pick_gpu(device: str, gpus: list[Any], runtime: str, hint: str = "") -> Any | None:
    """Returns the GPU of ``gpus`` (a runtime's visible GPUs) that ``device`` names, None for the CPU
    ('cpu', or 'auto' with no GPU visible), or raises: an index beyond ``gpus``, or no GPU at all."""
    kind, index = parse_device(device)
    if kind == "cpu" or (kind == "auto" and not gpus):
        return None
    if index < len(gpus):
        return gpus[index]
    seen = f"sees {len(gpus)} GPU(s)" if gpus else f"sees no GPU{hint}"
    raise BackendUnavailableError(f"device {device!r} was asked for, but {runtime} {seen}; "
                                  f"pass --device cpu (or auto)")


def load_object(ref: str) -> Any:
    """Returns the object named by ``"package.module:attribute"``."""
    module, _, attr = ref.partition(":")
    if not attr:
        raise InputError(f"{ref!r} is not of the form 'module:attribute'")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def choose_runtime(spec: ExtractorSpec, runtime: str | None) -> str:
    """Returns ``runtime`` if given and usable, else the first installed runtime the spec supports."""
    if runtime is not None:
        if runtime not in spec.builders:
            raise InputError(f"extractor {spec.name!r} has no {runtime!r} runtime; "
                             f"it has {', '.join(spec.builders)}")
        if not runtime_installed(runtime):
            raise BackendUnavailableError(
                f"runtime {runtime!r} needs the {RUNTIME_MODULES[runtime]!r} package: "
                f"pip install 'fidkit[{runtime}]'")
        return runtime
    for rt in RUNTIME_MODULES:
        if rt in spec.builders and runtime_installed(rt):
            return rt
    raise BackendUnavailableError(
        f"extractor {spec.name!r} needs one of the runtimes {', '.join(spec.builders)}, and none is "
        f"installed: pip install 'fidkit[torch]' (or tf, jax)")


class Extractor:
    """A feature extractor with numpy at its boundary, whatever runtime computes it."""

    def __init__(self, spec: ExtractorSpec, runtime: str, device: str, policy: ResizePolicy,
                 weights_sha256: str | None, forward: Forward, weights_source: str | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.runtime = runtime
        self.device = device
        self.policy = policy
        self.weights_sha256 = weights_sha256
        self.weights_source = weights_source
        self.feature_dim = spec.feature_dim
        self.logits_dim = spec.logits_dim
        self.input_size = spec.input_size
        self._forward = forward

    def __repr__(self) -> str:
        return (f"Extractor({self.name!r}, runtime={self.runtime!r}, device={self.device!r}, "
                f"policy={self.policy.name!r})")

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Returns {'features': (N, d), 'logits': (N, k)} for float32 NHWC RGB images on the 0..255 scale."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"extractor {self.name!r}: expected images of shape (N, H, W, 3), "
                             f"received {images.shape}")
        if images.shape[0] == 0:
            raise InputError(f"extractor {self.name!r}: received an empty batch")
        out = self._forward(np.ascontiguousarray(images, dtype=np.float32))
        for key, dim in (("features", self.feature_dim), ("logits", self.logits_dim)):
            if dim is None or key not in out:
                continue
            arr = out[key]
            if arr.shape != (images.shape[0], dim):
                raise FidkitError(f"extractor {self.name!r} ({self.runtime}) returned {key} of shape "
                                  f"{arr.shape}; expected {(images.shape[0], dim)}")
        return out

    def features(self, images: np.ndarray) -> np.ndarray:
        """Returns the (N, feature_dim) features of a batch."""
        return self(images)["features"]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Returns the (N, logits_dim) logits of a batch."""
        if self.logits_dim is None:
            raise FidkitError(f"extractor {self.name!r} has no logits output")
        return self(images)["logits"]


def extractor(name: str = "mnist", runtime: str | None = None, *, weights: str | None = None,
              device: str = "cpu", policy: str | None = None) -> Extractor:
    """Returns a ready extractor: spec ``name`` on ``runtime`` (first installed if None).

    ``weights`` is an explicit weights file (used with a warning if its digest is not the official one);
    ``policy`` overrides the spec's canonical resize policy (the choice is recorded in statistics).
    """
    from .resize import get_policy
    from .weights import resolve_weights

    spec = get_spec(name)
    rt = choose_runtime(spec, runtime)
    pol = get_policy(policy or spec.policy)
    cw: CanonicalWeights | None = resolve_weights(spec.weights, weights) if (spec.weights or weights) else None
    forward = load_object(spec.builders[rt])(spec=spec, weights=cw, device=device, policy=pol)
    return Extractor(spec, rt, device, pol, cw.digest if cw else None, forward,
                     weights_source=cw.source if cw else None)
