"""An extractor is two stages on one runtime: a preprocess (the resize policy) then a network.

``Extractor = Preprocess(policy, runtime) ∘ Network(spec, weights, runtime)``. The preprocess takes what
users hold — numpy arrays or the runtime's own tensors, NHWC / NCHW / NHW, 1-4 channels, uint8 or float
with a declared or unambiguous range (the rules of `fidkit.image_rules`, the same as for files) — and
executes the policy in one place per runtime (`fidkit.backends.common.run_preprocess`); the network
takes the result, on the same device. A tensor already on the runtime's device is not copied to the
host; only the outputs come back (numpy by default, ``host=False`` keeps them on the device).

Runtimes are reached by name only (`fidkit.registry.backend`): importing this module imports no
framework.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FidkitError, InputError
from .image_rules import ValueRange, parse_value_range
from .registry import ExtractorSpec, backend, choose_runtime, get_spec
from .resize import ResizePolicy, check_size, get_policy

if TYPE_CHECKING:
    from .weights import CanonicalWeights

_LAYOUTS = ("NHWC", "NCHW")


@dataclass(frozen=True)
class InputConvention:
    """What a network takes after the resize: size, channels, value range, normalisation, layout.

    ``channels`` 3 is RGB, 1 luminance (ITU-R BT.601-2 weights, as PIL's ``convert("L")``);
    ``input_range`` is where 0..255 is mapped linearly (``(0, 1)`` for ``ToTensor`` models, ``(-1, 1)``
    for tanh ones); then ``(x - mean) / std`` per channel on that scale when both are given
    (torchvision's ``Normalize``); ``layout`` is the tensor layout the network takes. Raises
    `InputError` for values out of these sets.
    """

    input_size: tuple[int, int]
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

    def describe(self) -> str:
        """Returns a one-line account of the network's input, for descriptions and provenance."""
        lo, hi = self.input_range
        norm = "" if self.mean is None else f", then (x - {self.mean}) / {self.std}"
        colour = "luminance (BT.601)" if self.channels == 1 else "RGB"
        h, w = self.input_size
        return f"{h}x{w}, {colour}, 0..255 -> [{lo:g}, {hi:g}]{norm}, {self.layout}"


def builtin_convention(spec: ExtractorSpec, policy: ResizePolicy, layout: str) -> InputConvention:
    """Returns the input convention of a built-in graph network: RGB on 0..255, the policy's mean/std."""
    return InputConvention(tuple(spec.input_size), 3, (0.0, 255.0), policy.mean, policy.std, layout)


#: A runtime's network: its input tensor (the convention's layout, on the device) -> named outputs.
Network = Callable[[Any], Mapping[str, Any]]
#: A runtime's preprocess: (batch, layout=, value_range=, name=, checked=) -> the network's input.
Preprocess = Callable[..., Any]


class Extractor:
    """A preprocess and a network on one runtime: images in, features (N, d) and logits (N, k) out.

    Attributes: ``name``, ``runtime``, ``device``, ``policy`` (the `ResizePolicy` the preprocess runs),
    ``feature_dim``, ``logits_dim`` (None without logits), ``input_size`` (h, w), ``weights_sha256``,
    ``weights_source``, ``spec``, ``convention`` (`InputConvention`), ``network`` and ``preprocess``.
    """

    def __init__(self, spec: ExtractorSpec, runtime: str, device: str, policy: ResizePolicy,
                 convention: InputConvention, preprocess: Preprocess, network: Network, *,
                 weights_sha256: str | None, weights_source: str | None = None,
                 rebuild: Callable[[ResizePolicy], Extractor] | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.runtime = runtime
        self.device = device
        self.policy = policy
        self.convention = convention
        self.preprocess = preprocess
        self.network = network
        self.weights_sha256 = weights_sha256
        self.weights_source = weights_source
        self.feature_dim = spec.feature_dim
        self.logits_dim = spec.logits_dim
        self.input_size = tuple(convention.input_size)
        self._rebuild = rebuild
        self._backend = backend(runtime)

    def __repr__(self) -> str:
        return (f"Extractor({self.name!r}, runtime={self.runtime!r}, device={self.device!r}, "
                f"policy={self.policy.name!r})")

    def outputs(self, images: Any, *, layout: str | None = None,
                value_range: ValueRange | str | None = None, host: bool = True, name: str | None = None,
                checked: bool = False) -> dict[str, Any]:
        """Returns {'features': (N, feature_dim), 'logits': (N, logits_dim)} for a batch of images, plus
        the extra outputs the spec declares in ``spec.extra["outputs"]`` (name -> dim), e.g.
        ``'spatial'`` (N, 2023) of inception-tf2015, the features of sFID (`fidkit.sfid`).

        ``images``: a numpy array or a tensor of this extractor's runtime (torch on any device, tf,
        jax), NHWC / NCHW / NHW (or one image: HWC / CHW with ``layout``), 1-4 channels, uint8 or float
        on ``value_range`` ((0, 255), (0, 1), (-1, 1); inferred when unambiguous), or a list of single
        images of different sizes. Returns float32 numpy arrays (float64 on the numpy runtime) with
        ``host=True``, else the runtime's tensors on its device. Raises `InputError` naming ``name``
        for images that break `fidkit.image_rules`.
        """
        x = self.preprocess(images, layout=layout, value_range=parse_value_range(value_range),
                            name=name or f"images for {self.name}", checked=checked)
        out = self.network(x)
        n = _batch_len(images)
        extra = dict(self.spec.extra.get("outputs", {}))  # e.g. inception-tf2015's sFID "spatial"
        for key, dim in (("features", self.feature_dim), ("logits", self.logits_dim), *extra.items()):
            if dim is None or key not in out:
                continue
            shape = tuple(out[key].shape)
            if shape[1:] != (dim,) or (n is not None and shape[0] != n):
                raise FidkitError(f"extractor {self.name!r} ({self.runtime}) returned {key} of shape "
                                  f"{shape}; expected (N, {dim})")
        if host:
            return {k: self._backend.to_host(v) for k, v in out.items()}
        return dict(out)

    def __call__(self, images: Any, **kwargs: Any) -> dict[str, Any]:
        """Returns `outputs` (numpy by default)."""
        return self.outputs(images, **kwargs)

    def features(self, images: Any, *, layout: str | None = None,
                 value_range: ValueRange | str | None = None, host: bool = True) -> Any:
        """Returns the (N, feature_dim) features of a batch (see `outputs` for what it accepts)."""
        return self.outputs(images, layout=layout, value_range=value_range, host=host)["features"]

    def logits(self, images: Any, *, layout: str | None = None,
               value_range: ValueRange | str | None = None, host: bool = True) -> Any:
        """Returns the (N, logits_dim) logits of a batch; raises `FidkitError` without logits."""
        if self.logits_dim is None:
            raise FidkitError(f"extractor {self.name!r} has no logits output")
        return self.outputs(images, layout=layout, value_range=value_range, host=host)["logits"]

    def with_policy(self, policy: str | ResizePolicy) -> Extractor:
        """Returns this extractor with another resize policy (the network is shared, not rebuilt)."""
        pol = get_policy(policy)
        if pol == self.policy:
            return self
        if self._rebuild is None:
            raise FidkitError(f"extractor {self.name!r} cannot change its resize policy")
        return self._rebuild(pol)


def _batch_len(images: Any) -> int | None:
    if isinstance(images, (list, tuple)):
        return len(images)
    shape = getattr(images, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) == 4 else None


def assemble(spec: ExtractorSpec, runtime: str, device: str, policy: ResizePolicy,
             convention: InputConvention, network: Network, *, weights_sha256: str | None,
             weights_source: str | None) -> Extractor:
    """Returns an `Extractor` of ``network`` behind ``runtime``'s preprocess for ``policy``.

    For a built-in network (``convention`` = `builtin_convention`), another policy also changes the
    normalisation to that policy's mean/std; a user model keeps its own convention.
    """
    rt = backend(runtime)
    builtin = convention == builtin_convention(spec, policy, convention.layout)

    def build(pol: ResizePolicy) -> Extractor:
        conv = builtin_convention(spec, pol, convention.layout) if builtin else convention
        return Extractor(spec, runtime, device, pol, conv, rt.preprocess(pol, conv, device), network,
                         weights_sha256=weights_sha256, weights_source=weights_source, rebuild=build)

    return build(policy)


def extractor(name: str = "mnist", runtime: str | None = None, *, weights: str | None = None,
              device: str = "cpu", policy: str | None = None) -> Extractor:
    """Returns a ready extractor: spec ``name`` on ``runtime`` (the first installed if None).

    ``weights`` is an explicit weights file (used with a warning if its digest is not the official one);
    ``policy`` overrides the spec's canonical resize policy (the choice is recorded in statistics);
    ``device`` is 'cpu', 'cuda', 'cuda:N' or 'auto'. Raises `InputError` for unknown names,
    `BackendUnavailableError` for a runtime that is not installed, `WeightsError` for weights.
    """
    from .weights import resolve_weights

    spec = get_spec(name)
    rt = choose_runtime(spec, runtime)
    pol = get_policy(policy or spec.policy)
    cw: CanonicalWeights | None = resolve_weights(spec.weights, weights) if (spec.weights or weights) else None
    net = _load_builder(spec.builders[rt])(spec=spec, weights=cw, device=device)
    conv = builtin_convention(spec, pol, getattr(net, "layout", "NHWC"))
    return assemble(spec, rt, device, pol, conv, net,
                    weights_sha256=cw.digest if cw else None, weights_source=cw.source if cw else None)


def _load_builder(ref: str) -> Callable[..., Network]:
    from .registry import load_object

    return load_object(ref)


def preprocess(images: Any, policy: ResizePolicy | str, size: tuple[int, int] = (299, 299),
               value_range: ValueRange | str | None = None, *, layout: str | None = None) -> np.ndarray:
    """Returns what a network sees before normalisation: float32 NHWC on the 0..255 scale at ``size``.

    ``images`` is anything `fidkit.images.open_source` accepts (array, tensor, folder, zip, .npy/.npz).
    Runs the policy's colour and value-range rules, input quantization and resize with the numpy
    runtime (the reference every fast path is checked against), so what a policy does can be
    inspected and compared exactly.
    """
    from .images import open_source

    pol = get_policy(policy)
    conv = InputConvention(check_size(size))
    run = backend("numpy").preprocess(pol, conv, "cpu")
    source = open_source(images, value_range=value_range, layout=layout)
    out = [run(batch, layout=source.layout, value_range=source.value_range, name=source.description,
               checked=True) for batch, _ in source.iter_batches(64)]
    return np.concatenate(out, axis=0).astype(np.float32)


__all__ = ["Extractor", "InputConvention", "Network", "Preprocess", "assemble", "builtin_convention",
           "extractor", "preprocess"]
