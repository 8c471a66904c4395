"""The extractor registry: names map to specs, specs to runtime implementations, imported only when used.

Built-in extractors are declared in `fidkit.extractors`; third parties register theirs through the
``fidkit.extractors`` entry-point group (a callable that calls `register_extractor`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from .errors import BackendUnavailableError, FidkitError, InputError

#: Runtime names in the order tried when the caller names none, and the module each needs.
#: ``numpy`` is the float64 reference interpreter of the core: slow, exact, always there.
RUNTIME_MODULES: Mapping[str, str] = MappingProxyType(
    {"torch": "torch", "jax": "jax", "tf": "tensorflow", "numpy": "numpy"})

@dataclass(frozen=True)
class ExtractorSpec:
    """What an extractor is, independent of the runtime that runs it.

    ``builders`` maps a runtime name to ``"module:function"``; the function is called as
    ``build(spec=..., weights=CanonicalWeights | None, device=str)`` and returns the network stage: a
    callable taking the runtime's float tensor (``input_size``, normalised with the policy's mean/std,
    in the layout named by its ``layout`` attribute, default NHWC) and returning
    ``{"features": (N, feature_dim), "logits": (N, logits_dim)}`` as the runtime's tensors. The
    preprocess stage in front of it is the runtime's own (`fidkit.extraction`).
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
    importlib.import_module("fidkit.extractors")  # registers the built-in extractors

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
    """Returns the framework module of ``runtime``, or raises naming ``purpose`` and the extra to install.

    TensorFlow is imported without its start-up log lines (absl/oneDNN/CPU-feature notices, which it
    writes to the process's stderr from C++) and with AutoGraph's "could not transform" warnings about
    fidkit's own functions dropped: fidkit's output is its own. The user's environment is left as it
    was, and AutoGraph still warns about the user's functions.
    """
    module = RUNTIME_MODULES[runtime]
    if module in sys.modules:
        return sys.modules[module]
    try:
        if module != "tensorflow":
            return importlib.import_module(module)
        with _quiet_tensorflow_import():
            tf = importlib.import_module(module)
        logging.getLogger("tensorflow").addFilter(_FidkitAutoGraphFilter())
        return tf
    except ImportError as exc:
        raise BackendUnavailableError(f"{purpose} needs {module!r} ({exc}): "
                                      f"pip install 'fidkit[{runtime}]'") from None


#: What TensorFlow's C++ start-up writes to stderr: glog-style lines of severity I/W/E ("I0000
#: 00:00:1795980215.745482  29425 port.cc:153] oneDNN custom operations are on ..."), absl's notice
#: about logs before InitializeLog, and the second line of the CPU-feature notice.
_TF_LOG_LINE = re.compile(r"^([IWE]\d{4} \S+\s+\d+ \S+:\d+\] |WARNING: All log messages before absl::"
                          r"|To enable the following instructions: )")


@contextlib.contextmanager
def _quiet_tensorflow_import() -> Iterator[None]:
    """Runs the block (TensorFlow's import) with its C++ start-up log lines held back.

    TF_CPP_MIN_LOG_LEVEL=1 (unless the user set it) keeps TensorFlow's INFO lines from being written at
    all, and is unset again afterwards; absl's lines ignore it, so stderr (the file descriptor: C++ does
    not go through ``sys.stderr``) is captured during the import and what is not a log line is passed on.
    """
    set_env = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    if set_env:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to capture
        saved = None
    try:
        if saved is None:
            yield
            return
        with tempfile.TemporaryFile(mode="w+b") as capture:
            sys.stderr.flush()
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                text = capture.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(keepends=True) if not _TF_LOG_LINE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
    finally:
        if set_env:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)


class _FidkitAutoGraphFilter(logging.Filter):
    """Drops AutoGraph's "could not transform ... will run it as-is" warning for functions of fidkit
    and of the import machinery fidkit's traced code calls (they run correctly as they are); the
    warning about any other function (the user's) passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("AutoGraph could not transform"):
            return True
        target = record.args[0] if isinstance(record.args, tuple) and record.args else None
        owner = str(getattr(target, "__module__", "") or "")
        return not (owner == "fidkit" or owner.startswith(("fidkit.", "importlib")))


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


def backend(runtime: str) -> Any:
    """Returns the runtime package ``fidkit.backends.<runtime>`` (imported by name, on first use).

    Every runtime package has the same entry points: ``network``, ``preprocess``, ``to_host``,
    ``is_tensor`` and ``all_reduce_sum`` (`fidkit.backends.common`). Raises `InputError` for an unknown
    runtime and `BackendUnavailableError` when its framework is not installed.
    """
    if runtime not in RUNTIME_MODULES:
        raise InputError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIME_MODULES)}")
    if runtime != "numpy":
        import_runtime(runtime, f"the {runtime} runtime")
    return importlib.import_module(f"fidkit.backends.{runtime}")


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
