"""The rules that say what an image batch is: its layout, its channels and its value range.

One set of rules for every route (files, arrays, framework tensors, a training loop's batches), used by
`fidkit.images` when it opens a source and by every runtime's preprocess (`fidkit.backends.common`)
when an extractor is handed a batch; they look only at shapes, dtypes and two numbers (min, max), so a
tensor on a GPU is judged without copying it to the host.

Layout: 4-d batches are NHWC or NCHW (declared with ``layout``, or told by the shape: an axis of 3
decides first, then one of 1, 2 or 4); 3-d arrays are a grayscale batch (NHW) or one image (HWC/CHW).
A shape that could be read two ways is an error naming both readings, unless ``layout`` is given.

Channels: 1 is replicated to RGB; 2 (gray + alpha) and 4 (RGBA) drop the alpha channel, keeping the
stored colour of each pixel (no compositing), as Pillow's ``convert("RGB")``, pytorch-fid,
torch-fidelity and clean-fid do.

Value range: uint8 and bool data is [0, 255], uint16 [0, 65535]; float data is declared
(``value_range``: (0, 255), (0, 1) or (-1, 1)) or inferred only when unambiguous. Data outside the
declared range, data using only a small corner of it (at most 1 under [0, 255]: images on [0, 1]), and
non-finite values are errors that say what the data look like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

ValueRange = tuple[float, float]

#: The value ranges fidkit understands, by the spelling accepted on the command line (``--range``).
NAMED_RANGES: dict[str, ValueRange] = {"0,255": (0.0, 255.0), "0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0)}
#: Relative slack outside a range before values contradict it (float rounding of generator outputs).
RANGE_SLACK = 1e-3
#: Layouts a batch may be declared in; HWC and CHW are one image (a batch axis is added).
LAYOUTS = ("NHWC", "NCHW", "NHW", "HWC", "CHW")
_CHANNELS = (1, 2, 3, 4)
#: ITU-R BT.601-2 luma weights (R, G, B), as in PIL's ``Image.convert("L")``: how a network that takes
#: one channel sees colour images.
LUMA_RGB = (0.299, 0.587, 0.114)


def _fmt_range(r: ValueRange) -> str:
    return f"[{r[0]:g}, {r[1]:g}]"


def parse_value_range(value: ValueRange | str | None) -> ValueRange | None:
    """Returns ``value`` as one of the known ranges (0, 255), (0, 1), (-1, 1), or None when not given.

    Raises `InputError` for any other range.
    """
    if value is None:
        return None
    if isinstance(value, str):
        key = value.replace(" ", "").strip("[]()")
    else:
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise InputError(f"value_range must be one of {list(NAMED_RANGES)} (--range), "
                             f"received {value!r}") from None
        key = f"{lo:g},{hi:g}"
    if key not in NAMED_RANGES:
        raise InputError(f"value_range must be one of {list(NAMED_RANGES)} (--range), received {value!r}")
    return NAMED_RANGES[key]


def integral_range(dtype: np.dtype) -> ValueRange | None:
    """Returns the range an integer/bool dtype carries ((0, 255) for uint8 and bool, (0, 65535) for
    uint16), or None for float dtypes, whose range is declared or inferred."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8 or dtype == np.bool_:
        return (0.0, 255.0)
    if dtype == np.uint16:
        return (0.0, 65535.0)
    return None


def _found(lo: float, hi: float) -> str:
    return f"min {lo:.2f}, max {hi:.2f}"


def infer_value_range(dtype: np.dtype, lo: float, hi: float, name: str) -> ValueRange:
    """Returns the value range of data with this dtype and extremes, when unambiguous; else raises.

    Raises `InputError` naming ``name`` for non-finite values, integer dtypes other than uint8/uint16,
    and float data that fits none of [0, 255], [0, 1], [-1, 1].
    """
    known = integral_range(dtype)
    if known is not None:
        return known
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"{name}: contains NaN or infinite values; images must be finite")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise InputError(f"{name}: {np.dtype(dtype)} values ({_found(lo, hi)}) have no known image range; "
                         f"convert to uint8 or float and declare the range with --range 0,255 (or 0,1 "
                         f"or -1,1)")
    if lo < 0.0:
        if lo >= -1.0 - 2 * RANGE_SLACK and hi <= 1.0 + 2 * RANGE_SLACK:
            return (-1.0, 1.0)
    elif hi <= 1.0 + RANGE_SLACK:
        return (0.0, 1.0)
    elif hi <= 255.0 * (1 + RANGE_SLACK):
        return (0.0, 255.0)
    raise InputError(f"{name}: {_found(lo, hi)} fits none of [0, 255], [0, 1], [-1, 1]; rescale the "
                     f"images or declare their range with --range")


def check_value_range(declared: ValueRange, lo: float, hi: float, name: str, *, floating: bool = True) -> None:
    """Raises `InputError` when data with extremes (lo, hi) contradicts the declared range.

    Contradicting means: non-finite values; values outside the range (beyond `RANGE_SLACK`); or, for
    float data (``floating``), a declared [0, 255] whose maximum is above 0 but at most 1: images on
    [0, 1] declared on the wrong scale give a silent, wrong FID in the thousands. Float data declared
    [-1, 1] that never goes below the midpoint 0 is not an error (a bright batch can be so) but a
    `FidkitWarning` saying it looks like [0, 1].
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"{name}: contains NaN or infinite values; images must be finite")
    slack = RANGE_SLACK * (declared[1] - declared[0])
    inside = lo >= declared[0] - slack and hi <= declared[1] + slack
    corner = floating and declared == (0.0, 255.0) and 0.0 < hi <= 1.0 + RANGE_SLACK
    if inside and floating and declared == (-1.0, 1.0) and lo >= 0.0 and hi > 0.0:
        import warnings

        from .errors import FidkitWarning

        warnings.warn(f"{name}: {_found(lo, hi)}: never below the midpoint of the declared [-1, 1], as "
                      f"images on [0, 1] would be; if they are, pass --range 0,1 (value_range=(0, 1) in "
                      f"Python), or the FID is computed on half-contrast images", FidkitWarning, stacklevel=3)
    if inside and not corner:
        return
    try:
        guess = infer_value_range(np.dtype(np.float32), lo, hi, name)
        hint = f"looks like {_fmt_range(guess)} but {_fmt_range(declared)} was declared"
        fix = f"pass --range {guess[0]:g},{guess[1]:g} (value_range={_fmt_range(guess)} in Python)"
        if guess == (-1.0, 1.0):
            fix += "; generator outputs in [-1, 1] are usually tanh"
    except InputError:
        hint = f"outside the declared {_fmt_range(declared)}"
        fix = "rescale the images or declare their range with --range"
    raise InputError(f"{name}: {_found(lo, hi)}: {hint}; {fix}")


def resolve_value_range(dtype: np.dtype, declared: ValueRange | None, lo: float, hi: float,
                        name: str) -> ValueRange:
    """Returns the range of data with this dtype and extremes: the declared one after checking it
    (`check_value_range`), else the dtype's (`integral_range`), else the inferred one."""
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    if declared is not None:
        check_value_range(declared, lo, hi, name, floating=floating)
        return declared
    return integral_range(dtype) or infer_value_range(dtype, lo, hi, name)


@dataclass(frozen=True)
class Layout:
    """How to read an array as a batch: ``order`` is 'NHWC' or 'NCHW' after ``add_axes`` are inserted.

    ``add_axes`` lists axes to insert first (0 for one image, -1 for the channel axis of NHW).
    """

    order: str
    add_axes: tuple[int, ...] = ()

    def shape(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """Returns the (N, H, W, C) sizes of an array of ``shape`` read this way."""
        s = list(shape)
        for axis in self.add_axes:
            s.insert(axis if axis >= 0 else len(s) + 1 + axis, 1)
        n, a, b, c = s
        return (n, a, b, c) if self.order == "NHWC" else (n, b, c, a)


def resolve_layout(shape: tuple[int, ...], layout: str | None, name: str) -> Layout:
    """Returns how to read an array of ``shape`` as a batch of images, or raises `InputError`.

    ``layout`` is one of `LAYOUTS` or None (told by the shape when unambiguous).
    """
    shape = tuple(int(s) for s in shape)
    if layout is not None and layout not in LAYOUTS:
        raise InputError(f"{name}: layout must be one of {', '.join(LAYOUTS)}, received {layout!r}")
    if len(shape) == 3:
        if layout is None:
            one_image = shape[-1] in _CHANNELS or shape[0] in _CHANNELS
            if one_image:
                reading = "HWC" if shape[-1] in _CHANNELS else "CHW"
                raise InputError(f"{name}: shape {shape} is either one {reading} image or a batch of "
                                 f"{shape[0]} grayscale images (NHW); pass --layout {reading} (a batch "
                                 f"axis is added) or --layout NHW (layout='{reading}' or layout='NHW' "
                                 f"in Python)")
            layout = "NHW"
        if layout == "NHW":
            return Layout("NHWC", (-1,))
        if layout in ("HWC", "CHW"):
            return Layout("N" + layout, (0,))
        raise InputError(f"{name}: a 3-d array is a grayscale batch (NHW) or one image (HWC, CHW), but "
                         f"layout={layout!r} was given")
    if len(shape) != 4:
        raise InputError(f"{name}: expected a batch of images (N, H, W, C), (N, C, H, W) or (N, H, W), "
                         f"found shape {shape}")
    if layout is None:  # an axis of 3 decides first (RGB is the rule), then one of 1, 2 or 4
        last, first = shape[3] == 3, shape[1] == 3
        if last == first:
            last, first = shape[3] in _CHANNELS, shape[1] in _CHANNELS
        if last == first:
            what = "could be either" if last else "has no channel axis of 1-4"
            raise InputError(f"{name}: shape {shape} {what} NHWC or NCHW; pass --layout NHWC or "
                             f"--layout NCHW (layout= in Python)")
        layout = "NHWC" if last else "NCHW"
    if layout not in ("NHWC", "NCHW"):
        raise InputError(f"{name}: a 4-d array is NHWC or NCHW, but layout={layout!r} was given")
    return Layout(layout)


def check_channels(channels: int, name: str) -> int:
    """Returns ``channels`` if it is 1, 2, 3 or 4 (see the module's colour rule), else raises."""
    if channels not in _CHANNELS:
        raise InputError(f"{name}: expected 1, 2, 3 or 4 channels, found {channels}; pass --layout if the "
                         f"channel axis was misread")
    return channels
