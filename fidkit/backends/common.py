"""What two or more runtimes share: the preprocess sequence, graph loading and parameter layouts.

Every runtime package (``fidkit/backends/<runtime>/``) exposes the same entry points, built on this
room: ``network(spec, weights, device)``, ``preprocess(policy, convention, device)``, ``to_host(x)``,
``is_tensor(obj)`` and ``all_reduce_sum(array)``. A runtime supplies its tensor operations as an `Ops`
object; `run_preprocess` is the one place the order of the steps is written:

1. the batch becomes a tensor of the runtime on its device (a tensor of that runtime already there is
   not copied; anything else goes through numpy);
2. layout (`fidkit.image_rules.resolve_layout`) to the runtime's working layout (NCHW for torch, NHWC
   for the others), then the colour rule: 1 channel replicated, alpha (2nd of 2, 4th of 4) dropped;
3. value range (`fidkit.image_rules.resolve_value_range`, judged on two numbers computed on the
   device): uint8 stays uint8 (the resize takes it), anything else becomes float32 on 0..255, clipped;
4. the policy's input quantization (float input rounded to uint8 levels, as a saved PNG would be);
5. the policy's geometry (`fidkit.resize.geometry`): a crop, the resize to the network's input size (the
   runtime's fast path; numpy's reference), a crop;
6. the network's input convention: luminance (1 channel, ITU-R BT.601), its value range, its
   normalisation ((x - mean) / std), its layout.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..archs.spec import Graph
from ..errors import InputError, WeightsError
from ..image_rules import LUMA_RGB, check_channels, resolve_layout, resolve_value_range  # noqa: F401
from ..images import to_255, to_numpy  # noqa: F401  (re-exported for the runtimes)
from ..resize import geometry

if TYPE_CHECKING:
    from ..extraction import InputConvention
    from ..registry import ExtractorSpec
    from ..resize import ResizePolicy
    from ..weights import CanonicalWeights

class Ops(Protocol):
    """A runtime's tensor operations, as `run_preprocess` uses them (x is a tensor of the runtime)."""

    #: 'NCHW' or 'NHWC': the layout the runtime resizes and normalises in
    work_layout: str

    def to_runtime(self, obj: Any) -> Any:
        """Returns ``obj`` (numpy, this runtime's tensor, anything else via numpy) on the device."""

    def shape(self, x: Any) -> tuple[int, ...]:
        """Returns the shape of ``x`` as Python ints."""

    def dtype(self, x: Any) -> np.dtype:
        """Returns the numpy dtype equivalent to ``x``'s."""

    def expand(self, x: Any, axis: int) -> Any:
        """Returns ``x`` with a new axis of size 1 at ``axis``."""

    def transpose(self, x: Any, perm: tuple[int, ...]) -> Any:
        """Returns ``x`` with its axes permuted (a view where the runtime has them)."""

    def channels(self, x: Any, keep: int, replicate: bool) -> Any:
        """Returns the first ``keep`` channels, or the first one replicated to 3 (``replicate``)."""

    def extremes(self, x: Any) -> tuple[float, float]:
        """Returns (min, max) as Python floats, (nan, nan) when any value is NaN."""

    def to_255(self, x: Any, value_range: tuple[float, float]) -> Any:
        """Returns ``x`` on ``value_range`` as float32 on 0..255, clipped (float64 arithmetic where the
        runtime has it: `fidkit.images.to_255`)."""

    def quantize(self, x: Any) -> Any:
        """Returns float32 ``x`` rounded half-to-even to uint8 levels and clipped to 0..255."""

    def resize(self, x: Any, policy: ResizePolicy, size: tuple[int, int]) -> Any:
        """Returns ``x`` (work layout, 0..255) resized to ``size`` under ``policy`` (no crop), float32."""

    def crop(self, x: Any, box: tuple[int, int, int, int]) -> Any:
        """Returns the (top, left, height, width) ``box`` of every image of ``x`` (work layout, any dtype)."""

    def concat(self, xs: Sequence[Any]) -> Any:
        """Returns the float32 batches ``xs`` joined along the batch axis."""

    def convention(self, x: Any, convention: InputConvention) -> Any:
        """Returns the resized batch as the network takes it (`fidkit.backends.common` step 6)."""


def _perm(src: str, dst: str) -> tuple[int, ...]:
    return tuple(src.index(a) for a in dst)


def _nonfinite_image(x: Any) -> int:
    """Returns the index of the first image (axis 0) of ``x`` holding a NaN or an infinity, -1 if none.

    Only called once the extremes computed on the device are not finite: the error path copies the
    batch to the host to name the image."""
    arr = to_numpy(x)
    bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else -1


def _uniform(ops: Ops, x: Any, policy: ResizePolicy, size: tuple[int, int], *, layout: str | None,
             value_range: tuple[float, float] | None, name: str, checked: bool, first: int = 0) -> Any:
    """Steps 1-5 of the module's sequence for one array of equally sized images, the first of which
    is image ``first`` of the caller's input (for messages)."""
    x = ops.to_runtime(x)
    shape = ops.shape(x)
    lay = resolve_layout(shape, layout, name)
    n, h, w, c = lay.shape(shape)
    if n == 0 or h == 0 or w == 0:
        raise InputError(f"{name}: no images (shape {shape})")
    for axis in lay.add_axes:
        x = ops.expand(x, axis)
    if lay.order != ops.work_layout:
        x = ops.transpose(x, _perm(lay.order, ops.work_layout))
    check_channels(c, name)
    if c != 3:
        x = ops.channels(x, keep=3 if c == 4 else 1, replicate=c in (1, 2))
    dtype = ops.dtype(x)
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise InputError(f"{name}: expected a numeric array of images, found dtype {dtype}")
    if checked and value_range is not None:
        rng = value_range
    else:
        floating = np.issubdtype(dtype, np.floating)
        lo, hi = ops.extremes(x) if (floating or value_range is not None) else (0.0, 0.0)
        if floating and not (np.isfinite(lo) and np.isfinite(hi)):
            bad = _nonfinite_image(x)
            if bad >= 0:
                raise InputError(f"{name}: image {first + bad} contains NaN or infinite values; images "
                                 f"must be finite")
        rng = resolve_value_range(dtype, value_range, lo, hi, name)
    if dtype == np.bool_:  # False/True are black/white
        rng = (0.0, 1.0)
    if not (dtype == np.uint8 and rng == (0.0, 255.0)):
        x = ops.to_255(x, rng)
        if policy.quantize_input and dtype not in (np.uint8, np.bool_):
            x = ops.quantize(x)
    geo = geometry(policy, (h, w), size)
    if geo.pre_crop is not None:
        x = ops.crop(x, geo.pre_crop)
        h, w = geo.pre_crop[2:]
    if (h, w) != geo.resize_to:
        x = ops.resize(x, policy, geo.resize_to)
    if geo.post_crop is not None:
        x = ops.crop(x, geo.post_crop)
    return x


def run_preprocess(ops: Ops, policy: ResizePolicy, convention: InputConvention, batch: Any, *,
                   layout: str | None = None, value_range: tuple[float, float] | None = None,
                   name: str = "images", checked: bool = False) -> Any:
    """Returns the network input for ``batch`` (the module's steps 1-6), a tensor of the runtime.

    ``batch`` is an array or tensor of images (see `fidkit.image_rules` for layouts and ranges), or a
    list of single images (HWC/CHW or (1, ...)) of different sizes, kept in order. ``checked`` says the
    caller already checked ``value_range`` against the whole input (a source read from a file).
    Raises `InputError` naming ``name`` for a batch that breaks the rules.
    """
    size = convention.input_size
    kw = {"layout": layout, "value_range": value_range, "name": name, "checked": checked}
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise InputError(f"{name}: received an empty list of images")
        one = None if layout is None else layout if layout in ("HWC", "CHW") else layout[1:]
        parts, run, run_shape, first = [], [], None, 0
        for i, img in enumerate(batch):
            img_shape = tuple(getattr(img, "shape", np.shape(img)))
            if run and img_shape != run_shape:
                parts.append(_uniform(ops, _stack(run), policy, size, **{**kw, "layout": _batched(one)},
                                      first=first))
                run, first = [], i
            run.append(img)
            run_shape = img_shape
        parts.append(_uniform(ops, _stack(run), policy, size, **{**kw, "layout": _batched(one)},
                              first=first))
        x = parts[0] if len(parts) == 1 else ops.concat(parts)
    else:
        x = _uniform(ops, batch, policy, size, **kw)
    return ops.convention(x, convention)


def _batched(one: str | None) -> str | None:
    return None if one is None else "N" + one


def _stack(images: list[Any]) -> Any:
    if len(images) == 1:
        return to_numpy(images[0])[None]
    return np.stack([to_numpy(i) for i in images])


# --------------------------------------------------------------------------------------- graphs


def load_params(graph: Graph, path: str, where: str | None = None) -> dict[str, np.ndarray]:
    """Returns the graph's parameters read from an .npz of named float32 arrays, as float64.

    Raises `WeightsError` naming the file when it cannot be read or lacks/misshapes a parameter.
    """
    where = where or str(path)
    try:
        with open(path, "rb") as fh:
            data = np.load(fh, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise WeightsError(f"{where}: holds one array, not named weights; expected an .npz "
                                   f"with arrays named '<node>.<param>'")
            names = set(data.files)
            params: dict[str, np.ndarray] = {}
            for key, shape in graph.param_shapes().items():
                if key not in names:
                    raise WeightsError(f"{where}: weights file lacks {key!r} (shape {shape}) needed by "
                                       f"graph {graph.name!r}; convert the checkpoint with "
                                       f"`fidkit weights convert`")
                arr = data[key]
                if arr.shape != shape:
                    raise WeightsError(f"{where}: {key!r} has shape {arr.shape}, graph {graph.name!r} "
                                       f"expects {shape}; the file is for another network")
                params[key] = arr.astype(np.float64)
    except WeightsError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{where}: cannot read weights as .npz ({type(exc).__name__}: {exc}); "
                           f"re-download or re-convert the file") from None
    return params


def graph_and_params(spec: ExtractorSpec, weights: CanonicalWeights | None,
                     runtime: str) -> tuple[Graph, dict[str, np.ndarray]]:
    """Returns the spec's graph and its float64 parameters: the start of every runtime's `network`."""
    from ..registry import load_object

    if spec.arch is None:
        raise InputError(f"extractor {spec.name!r} has no graph (spec.arch); the {runtime} graph runtime "
                         f"cannot run it")
    if weights is None:
        raise WeightsError(f"extractor {spec.name!r} needs weights, and none were resolved; pass "
                           f"--weights FILE")
    graph: Graph = load_object(spec.arch)()
    return graph, load_params(graph, str(weights.path))


def channels_last_params(graph: Graph, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Returns float32 parameters in the layouts of TF and JAX: conv kernels HWIO, dense (in, out)."""
    out: dict[str, np.ndarray] = {}
    ops = {n.name: n.op for n in graph.nodes}
    for key in graph.param_shapes():
        node, _, name = key.rpartition(".")
        arr = np.asarray(params[key], dtype=np.float32)
        if name == "weight" and ops[node] == "conv2d":
            arr = arr.transpose(2, 3, 1, 0)
        elif name == "weight" and ops[node] == "dense":
            arr = arr.T
        out[key] = np.ascontiguousarray(arr)
    return out
