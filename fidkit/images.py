"""Image sources: folders, zips, arrays, tensors and generators, read as float32 NHWC RGB on the 0..255 scale.

Every source yields batches in input order, with the names of the images in them (relative file paths,
or indices), and applies the rules that decide what the network sees before the resize:

Colour (files are decoded by Pillow, first frame only, EXIF orientation ignored, as every peer does):
  * grayscale (``1``, ``L``, 16-bit ``I;16``/``I``, float ``F``) -> RGB by replicating the channel;
  * alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``) -> dropped: the stored colour of each pixel is kept, as
    Pillow's ``convert("RGB")`` and pytorch-fid, torch-fidelity and clean-fid do (no compositing);
  * palette (``P``) -> the palette's RGB colours (its transparency is dropped like alpha);
  * CMYK (incl. Adobe's inverted JPEGs, which Pillow un-inverts) -> Pillow's conversion without a colour
    profile, R = (255 - C)(255 - K) / 255 and so on, as every peer gets it;
  * 16 bits per channel (grayscale ``I;16``, and PNGs in 48-bit RGB, 64-bit RGBA or 32-bit gray + alpha,
    which Pillow alone would cut to their high bytes) -> scaled exactly to 0..255 (x * 255 / 65535,
    float32), alpha dropped as above;
  * arrays: 1 channel replicated, 2 (gray + alpha) and 4 (RGBA) channels drop the alpha channel.

Value range: uint8 data is [0, 255] and uint16 [0, 65535]; float data is declared by the caller
(``value_range``: (0, 255), (0, 1) or (-1, 1)) or inferred only when unambiguous (`fidkit.image_rules`,
judged on every image of the input). Data that contradicts the declared range, or fits none, is an
`InputError` that says what was found.

This module only decodes and groups: batches come in input order as they are (arrays in their own
layout and dtype, with the source's ``layout`` and ``value_range``; decoded files as uint8 NHWC RGB, or
float32 on 0..255 for 16-bit and float files); a folder or zip of mixed sizes gives a list of images
per batch. Quantization and resizing are the extractor's preprocess (`fidkit.extraction`).
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import MappingProxyType
from typing import Any

import numpy as np

from . import npfile
from .errors import InputError
from .image_rules import (  # noqa: F401  (re-exported: the rules are part of this module's contract)
    NAMED_RANGES,
    RANGE_SLACK,
    ValueRange,
    check_value_range,
    infer_value_range,
    integral_range,
    parse_value_range,
    resolve_layout,
)

Name = str | int

#: File extensions read from folders and zip archives (case-insensitive); a GIF is read as its first
#: frame, like every other multi-frame file. Other files are not read: they are listed in ``ignored``.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")

_CHUNK = 256


def _extremes(arr: np.ndarray, name: str, first: int = 0) -> tuple[float, float]:
    """Returns (min, max) of a possibly memory-mapped array, reading it in chunks of images; raises
    `InputError` naming the first image with a non-finite value (wherever it is in the array), counted
    from ``first`` (the index of the array's first image in the whole input)."""
    lo, hi = np.inf, -np.inf
    for start in range(0, max(arr.shape[0], 1), _CHUNK):
        part = np.asarray(arr[start:start + _CHUNK])
        if not part.size:
            continue
        if np.issubdtype(part.dtype, np.floating):
            bad = ~np.isfinite(part.reshape(len(part), -1)).all(axis=1)
            if bad.any():
                raise InputError(f"{name}: image {first + start + int(np.argmax(bad))} contains NaN or infinite "
                                 f"values; images must be finite")
        lo = min(lo, float(part.min()))
        hi = max(hi, float(part.max()))
    return lo, hi


def _to_rgb255(arr: np.ndarray, value_range: ValueRange, name: str) -> np.ndarray:
    """Returns NHWC data with 1-4 channels as float32 RGB on the 0..255 scale, clamped to it."""
    channels = arr.shape[-1]
    if channels in (1, 2):
        arr = np.repeat(arr[..., :1], 3, axis=-1)
    elif channels == 4:
        arr = arr[..., :3]
    elif channels != 3:
        raise InputError(f"{name}: expected 1, 2, 3 or 4 channels, found {channels}")
    return to_255(arr, value_range)


def to_255(x: np.ndarray, value_range: ValueRange) -> np.ndarray:
    """Returns data on ``value_range`` as float32 on 0..255, clipped: float64 arithmetic, one rounding to
    float32 (what every runtime that has float64 reproduces bit for bit)."""
    lo, hi = value_range
    if value_range == (0.0, 255.0):
        out = np.asarray(x, dtype=np.float32)
    else:
        out = ((np.asarray(x, dtype=np.float64) - lo) * (255.0 / (hi - lo))).astype(np.float32)
    return np.clip(out, 0.0, 255.0, out=out if out is not x else None)


def to_numpy(obj: Any) -> np.ndarray:
    """Returns a numpy array for a numpy array, a torch / TensorFlow / JAX tensor (copied to the host;
    bfloat16 and float16 become float32), or anything ``np.asarray`` takes; frameworks are looked up in
    ``sys.modules`` only, never imported."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.to(torch.float32)
        return t.cpu().numpy()
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(obj, (tf.Tensor, tf.Variable)):
        obj = obj.numpy()
    arr = np.asarray(obj)
    if arr.dtype.name in ("bfloat16", "float16"):
        arr = arr.astype(np.float32)
    return arr


def is_framework_tensor(obj: Any) -> bool:
    """Returns whether ``obj`` is a torch, TensorFlow or JAX tensor (frameworks never imported here)."""
    for module, attrs in (("torch", ("Tensor",)), ("tensorflow", ("Tensor", "Variable")), ("jax", ("Array",))):
        mod = sys.modules.get(module)
        if mod is not None and isinstance(obj, tuple(getattr(mod, a) for a in attrs)):
            return True
    return False


class ImageSource:
    """A sequence of images: ``len``, ``names``, and batches of float32 NHWC RGB on the 0..255 scale."""

    #: what the source is, for messages and provenance
    description: str = ""

    def __init__(self) -> None:
        self.names: list[Name] = []
        #: files that could not be decoded and were skipped (``skip_bad``), filled as batches are read
        self.skipped: list[str] = []
        #: files of a folder or zip that are not images by their extension, not read
        self.ignored: list[str] = []
        self.value_range: ValueRange | None = None
        #: the layout of the batches (`fidkit.image_rules.LAYOUTS`), None when each batch tells
        self.layout: str | None = "NHWC"

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r}, {len(self)} images)"

    def iter_batches(self, batch_size: int, workers: int | None = None
                     ) -> Iterator[tuple[np.ndarray | list[np.ndarray], list[Name]]]:
        """Yields (batch, names) in input order, at most ``batch_size`` images each: an array in the
        source's ``layout`` and dtype, or a list of HWC images of different sizes."""
        raise NotImplementedError

    @staticmethod
    def _check_batch_size(batch_size: int) -> int:
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be at least 1, received {batch_size!r}")
        return int(batch_size)


class ArraySource(ImageSource):
    """Images held in one array (in memory, memory-mapped .npy, .npz member, or a converted tensor)."""

    def __init__(self, array: np.ndarray, name: str, *, value_range: ValueRange | None,
                 layout: str | None) -> None:
        super().__init__()
        self.description = name
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise InputError(f"{name}: expected a numeric array of images, found dtype {array.dtype}")
        lay = resolve_layout(array.shape, layout, name)
        if lay.add_axes == (0,):  # one image: a batch of one
            array, self.layout = array[None], lay.order
        else:
            self.layout = "NHW" if lay.add_axes else lay.order
        n, h, w, _ = lay.shape(array.shape[1:] if lay.add_axes == (0,) else array.shape)
        if n == 0 or h == 0 or w == 0:
            raise InputError(f"{name}: no images (shape {array.shape})")
        self._array = array
        floating = np.issubdtype(array.dtype, np.floating)
        if floating or value_range is not None:
            lo, hi = _extremes(array, name)
            if value_range is None:
                value_range = infer_value_range(array.dtype, lo, hi, name)
            else:
                check_value_range(value_range, lo, hi, name, floating=floating)
        if value_range is None and integral_range(array.dtype) is None:
            # an integer dtype with no known range: the error quotes the data's real extremes
            value_range = infer_value_range(array.dtype, *_extremes(array, name), name)
        self.value_range = value_range or infer_value_range(array.dtype, 0.0, 0.0, name)
        self.names = list(range(array.shape[0]))

    def iter_batches(self, batch_size: int, workers: int | None = None
                     ) -> Iterator[tuple[np.ndarray, list[Name]]]:
        """Yields (batch, names) as `ImageSource.iter_batches` describes."""
        batch_size = self._check_batch_size(batch_size)
        for start in range(0, self._array.shape[0], batch_size):
            yield np.asarray(self._array[start:start + batch_size]), self.names[start:start + batch_size]


class GeneratorSource(ImageSource):
    """Images drawn from ``sample(n) -> batch`` (numpy or a framework tensor), ``num`` in all."""

    def __init__(self, sample: Callable[..., Any], *, num: int | None, seed: int | None,
                 value_range: ValueRange | None, layout: str | None) -> None:
        super().__init__()
        self.description = f"generator {getattr(sample, '__qualname__', type(sample).__name__)}"
        if num is None or int(num) < 1:
            raise InputError(f"{self.description}: pass num=<number of images to draw> (>= 1), "
                             f"received {num!r}")
        self._sample, self._seed = sample, seed
        self.layout = layout
        self.value_range = value_range
        self.names = list(range(int(num)))

    def _draw(self, n: int, index: int) -> np.ndarray:
        if self._seed is None:
            out = self._sample(n)
        else:
            batch_seed = int(np.random.SeedSequence([int(self._seed), index]).generate_state(1)[0])
            try:
                out = self._sample(n, seed=batch_seed)
            except TypeError as exc:
                if "seed" not in str(exc):
                    raise
                raise InputError(f"{self.description}: seed was given, so it is called as "
                                 f"sample(n, seed=...); add a seed parameter or drop seed") from None
        arr = to_numpy(out)
        got = resolve_layout(arr.shape, self.layout, self.description).shape(arr.shape)[0]
        if got != n:
            raise InputError(f"{self.description}: sample({n}) returned {got} images")
        return arr

    def iter_batches(self, batch_size: int, workers: int | None = None
                     ) -> Iterator[tuple[np.ndarray, list[Name]]]:
        """Yields (batch, names) as `ImageSource.iter_batches` describes."""
        batch_size = self._check_batch_size(batch_size)
        for k, start in enumerate(range(0, len(self.names), batch_size)):
            names = self.names[start:start + batch_size]
            arr = self._draw(len(names), k)
            lo, hi = _extremes(arr, f"{self.description} (batch {k})", first=start)
            if self.value_range is None:  # inferred once, from the first batch, then enforced
                self.value_range = infer_value_range(arr.dtype, lo, hi, self.description)
            else:
                check_value_range(self.value_range, lo, hi, f"{self.description} (batch {k})",
                                  floating=np.issubdtype(arr.dtype, np.floating))
            yield arr, names


# ---------------------------------------------------------------------------------------------- files


#: Pillow's raw mode for a PNG with 16 bits per channel and colour (IHDR colour type 2, 6, 4) -> the raw
#: mode that unpacks the bytes Pillow leaves out. Pillow unfilters and de-interlaces the scanlines in C,
#: then keeps each big-endian sample's high byte (``RGB;16B`` -> mode RGB). The same decoder with the
#: little-endian unpacker keeps the low bytes instead, so a second decode (RGB, RGBA) or a byte-for-byte
#: one (gray + alpha as four 8-bit "channels") recovers every sample exactly at C speed (512 x 512 RGB:
#: 8 ms with the float conversion, against 1.6 ms for Pillow's 8-bit read). A PNG decoder in numpy
#: would need a Python loop along every scanline for the Average and Paeth filters, orders of magnitude
#: slower. This relies on Pillow's tile layout (the same in Pillow 10.0 to 13.0), so `_png16` checks it
#: first and refuses a layout it does not know with a clear error rather than read 8 bits.
_PNG16_RAWMODES = MappingProxyType({
    ("RGB", "RGB;16B"): "RGB;16L",
    ("RGBA", "RGBA;16B"): "RGBA;16L",
    ("RGBA", "LA;16B"): "RGBA",
})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png16_colour(data: bytes | str) -> bool:
    """Whether ``data`` is a PNG whose IHDR says 16 bits per channel with colour or alpha."""
    if isinstance(data, bytes):
        head = data[:26]
    else:
        with open(data, "rb") as f:
            head = f.read(26)
    return (len(head) == 26 and head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR"
            and head[24] == 16 and head[25] in (2, 4, 6))


def _png16(im: Any, data: bytes | str, name: str) -> np.ndarray:
    """Returns a 16-bit-per-channel colour PNG, opened but not loaded as ``im``, as float32 HWC on
    0..255: every sample exactly, x * 255 / 65535."""
    from PIL import Image

    tile = list(im.tile)
    rawmode = tile[0][3] if len(tile) == 1 and len(tile[0]) == 4 else None
    other = _PNG16_RAWMODES.get((im.mode, rawmode)) if isinstance(rawmode, str) else None
    if other is None or tile[0][0] != "zip" or tuple(tile[0][1]) != (0, 0, *im.size):
        raise InputError(f"{name}: a PNG with 16 bits per channel, which Pillow {Image.__version__} opens "
                         f"as mode {im.mode} with tiles {tile!r}; fidkit knows how to read all 16 bits "
                         f"only from a single 'zip' tile of raw mode {sorted(r for _, r in _PNG16_RAWMODES)}; "
                         f"convert the file to 8 bits per channel or use a Pillow version from 10 to 13")

    def swapped(image: Any) -> Any:
        t = tile[0]
        image.tile = [t._replace(args=other) if hasattr(t, "_replace") else (*t[:3], other)]
        image.load()
        return image

    if rawmode == "LA;16B":  # 4 bytes a pixel either way: gray high, gray low, alpha high, alpha low
        both = np.asarray(swapped(im), dtype=np.uint16)
        samples = both[..., :1] * 256 + both[..., 1:2]
    else:
        im.load()
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as again:
            low = np.asarray(swapped(again), dtype=np.uint16)
        samples = np.asarray(im, dtype=np.uint16) * 256 + low
    return _to_rgb255(samples.astype(np.float64), (0.0, 65535.0), name)


def _decode(data: bytes | str, name: str, value_range: ValueRange | None) -> np.ndarray:
    """Returns one image file as HWC RGB: uint8, or float32 on 0..255 (16-bit and float images)."""
    from PIL import Image

    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        if im.format == "PNG" and _png16_colour(data):
            return _png16(im, data, name)
        im.load()
        mode = im.mode
        if mode.startswith("I") or mode == "F":
            arr = np.asarray(im)
            if mode == "F":
                lo, hi = float(arr.min()), float(arr.max())
                rng = value_range or infer_value_range(arr.dtype, lo, hi, name)
                check_value_range(rng, lo, hi, name)
            else:
                rng = (0.0, 65535.0)
                if arr.min() < 0 or arr.max() > 65535:
                    raise InputError(f"{name}: 32-bit integer image with values outside 0..65535 "
                                     f"(min {arr.min()}, max {arr.max()}); convert it to 8 or 16 bits")
            return _to_rgb255(arr[..., None].astype(np.float64), rng, name)
        if mode != "RGB":
            im = im.convert("RGB")
        return np.asarray(im, dtype=np.uint8)


def _header_size(data: bytes | str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        return im.size[1], im.size[0]


class FileSource(ImageSource):
    """Image files (a folder, recursively, or a zip archive), decoded in parallel threads."""

    #: how the skip option is spelled in messages; the command line sets its own, ``--skip-bad``
    skip_option = "skip_bad=True (on the command line: --skip-bad)"

    def __init__(self, description: str, names: Sequence[str], *, skip_bad: bool,
                 value_range: ValueRange | None, ignored: Sequence[str] = ()) -> None:
        super().__init__()
        self.description = description
        self.names = list(names)
        #: files that are not images by their extension (hidden files aside), not read
        self.ignored = sorted(ignored)
        self._skip_bad = skip_bad
        self.value_range = (0.0, 255.0)  # decoded files: uint8, or float32 already on 0..255
        self._sizes: dict[str, tuple[int, int]] | None = None
        if not self.names:
            other = f"; found only {describe_ignored(self.ignored)}" if self.ignored else ""
            raise InputError(f"{description}: no images found (looked for "
                             f"{', '.join(IMAGE_EXTENSIONS)}, recursively){other}")
        # 8- and 16-bit files carry their range; a declared one applies to float (mode F) images only
        self._float_range = value_range

    def _read(self, name: str) -> bytes | str:
        raise NotImplementedError

    def _label(self, name: str) -> str:
        raise NotImplementedError

    def _fail(self, name: str, exc: BaseException) -> None:
        if isinstance(exc, InputError):
            msg = str(exc)
        else:
            msg = f"{self._label(name)}: cannot decode ({type(exc).__name__}: {exc})"
        if not self._skip_bad:
            raise InputError(f"{msg}; pass {self.skip_option} to skip unreadable files") from exc
        self.skipped.append(name)

    def _scan_sizes(self, pool: ThreadPoolExecutor) -> dict[str, tuple[int, int] | BaseException]:
        def one(name: str) -> tuple[int, int] | BaseException:
            try:
                return _header_size(self._read(name))
            except Exception as exc:  # reported (or skipped) in input order by the caller
                return exc
        return dict(zip(self.names, pool.map(one, self.names), strict=True))

    def _load(self, name: str) -> np.ndarray:
        return _decode(self._read(name), self._label(name), self._float_range)

    def iter_batches(self, batch_size: int, workers: int | None = None
                     ) -> Iterator[tuple[np.ndarray | list[np.ndarray], list[Name]]]:
        """Yields (batch, names) as `ImageSource.iter_batches` describes."""
        batch_size = self._check_batch_size(batch_size)
        workers = max(1, int(workers) if workers is not None else min(8, os.cpu_count() or 1))
        self.skipped = []
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fidkit-decode") as pool:
            sizes = self._scan_sizes(pool)
            names = []
            for name in self.names:
                if isinstance(sizes[name], BaseException):
                    self._fail(name, sizes[name])
                else:
                    names.append(name)
            mixed = len({sizes[n] for n in names}) > 1
            window: deque[tuple[str, Future[np.ndarray]]] = deque()
            pending = iter(names)
            batch: list[np.ndarray] = []
            batch_names: list[Name] = []

            def refill() -> None:
                while len(window) < 2 * batch_size + workers:
                    name = next(pending, None)
                    if name is None:
                        return
                    window.append((name, pool.submit(self._load, name)))

            refill()
            while window:
                name, fut = window.popleft()
                try:
                    img = fut.result()
                except Exception as exc:  # noqa: BLE001  (named in the error, or skipped)
                    self._fail(name, exc)
                else:
                    batch.append(img)
                    batch_names.append(name)
                refill()
                if len(batch) == batch_size:
                    yield (batch if mixed else _stack(batch)), batch_names
                    batch, batch_names = [], []
            if batch:
                yield (batch if mixed else _stack(batch)), batch_names
        if len(self.skipped) == len(self.names):
            raise InputError(f"{self.description}: every file was unreadable ({len(self.skipped)} skipped)")


def describe_ignored(names: Sequence[str], shown: int = 5) -> str:
    """Returns "3 files that are not images (.gif, .txt): a.gif, b.txt, notes.txt" for ``names``, the
    first ``shown`` of them named."""
    kinds = sorted({os.path.splitext(n)[1].lower() or "no extension" for n in names})
    listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    noun = "file that is not an image" if len(names) == 1 else "files that are not images"
    return f"{len(names)} {noun} ({', '.join(kinds)}): {listed}"


def _stack(images: list[np.ndarray]) -> np.ndarray:
    """Returns equally sized decoded images as one batch: uint8 unless a 16-bit or float file is among
    them (then float32, on the same 0..255 scale)."""
    if all(i.dtype == np.uint8 for i in images):
        return np.stack(images)
    return np.stack([i.astype(np.float32) for i in images])


class FolderSource(FileSource):
    """Image files under a folder, recursively, in sorted order of their relative paths.

    Hidden files and folders (names starting with '.', e.g. macOS ``._x.png`` forks) are skipped.
    """

    def __init__(self, root: str, *, skip_bad: bool, value_range: ValueRange | None) -> None:
        self.root = os.fspath(root)
        names, ignored = [], []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for f in filenames:
                if not f.startswith("."):
                    rel = os.path.relpath(os.path.join(dirpath, f), self.root).replace(os.sep, "/")
                    (names if f.lower().endswith(IMAGE_EXTENSIONS) else ignored).append(rel)
        super().__init__(self.root, sorted(names), skip_bad=skip_bad, value_range=value_range,
                         ignored=ignored)

    def _read(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _label(self, name: str) -> str:
        return os.path.join(self.root, name)


class ZipSource(FileSource):
    """Image files in a zip archive, in sorted order of their member names (hidden ones skipped)."""

    def __init__(self, path: str, *, skip_bad: bool, value_range: ValueRange | None) -> None:
        self.path = os.fspath(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise InputError(f"{self.path}: cannot open as a zip archive ({exc})") from None
        files = [i.filename for i in self._zip.infolist()
                 if not i.is_dir() and not i.filename.startswith("__MACOSX/")
                 and not any(part.startswith(".") for part in i.filename.split("/"))]
        names = [f for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
        super().__init__(self.path, sorted(names), skip_bad=skip_bad, value_range=value_range,
                         ignored=[f for f in files if not f.lower().endswith(IMAGE_EXTENSIONS)])

    def _read(self, name: str) -> bytes:
        return self._zip.read(name)

    def _label(self, name: str) -> str:
        return f"{self.path}:{name}"


def open_source(source: Any, *, value_range: ValueRange | str | None = None, layout: str | None = None,
                skip_bad: bool = False, seed: int | None = None, num: int | None = None) -> ImageSource:
    """Returns an `ImageSource` for a folder, zip, .npy/.npz file, array, tensor or ``sample(n)`` callable.

    ``value_range`` declares float data's range ((0, 255), (0, 1), (-1, 1) or "0,255", "0,1", "-1,1");
    ``layout`` ('NHWC', 'NCHW', 'NHW') is needed only when the shape does not tell; ``skip_bad`` skips
    unreadable files (listed in ``.skipped``) instead of raising; files of other types in a folder or zip
    are listed in ``.ignored``; ``seed`` and ``num`` apply to
    generators, called as ``sample(n)`` or, with a seed, ``sample(n, seed=s)`` with a seed per batch.
    """
    if isinstance(source, ImageSource):
        return source
    rng = parse_value_range(value_range)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            return FolderSource(path, skip_bad=skip_bad, value_range=rng)
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file or folder; expected an image folder, .zip, .npy or .npz")
        kind = npfile.container(path)  # by content, not by name
        if kind in ("npy", "npz") or (kind is None and path.lower().endswith((".npy", ".npz"))):
            info = npfile.require(path, "images")
            array = npfile.read(info, [info.main], mmap=True)[info.main]
            return ArraySource(array, path, value_range=rng, layout=layout)
        if kind == "zip":
            return ZipSource(path, skip_bad=skip_bad, value_range=rng)
        raise InputError(f"{path}: not an image folder, .zip, .npy or .npz file")
    if is_framework_tensor(source):
        return ArraySource(to_numpy(source), f"{type(source).__module__}.{type(source).__name__}",
                           value_range=rng, layout=layout)
    if isinstance(source, np.ndarray):
        return ArraySource(source, "array", value_range=rng, layout=layout)
    if callable(source):
        return GeneratorSource(source, num=num, seed=seed, value_range=rng, layout=layout)
    raise InputError(f"cannot read images from a {type(source).__name__}; expected a folder, .zip, .npy/.npz "
                     f"path, a numpy array, a torch/TensorFlow/JAX tensor, or a sample(n) callable")
