"""Numpy files handed to fidkit (.npy, .npz): what they hold, told from their headers, and read safely.

Every ``.npy``/``.npz`` a user passes — statistics, features or images — goes through this module:

* `container` says, from the file's first bytes, whether it is a numpy array (``\\x93NUMPY``, the
  ``.npy`` format), a zip of ``.npy`` arrays (an ``.npz``), another zip, or neither. The extension is
  not consulted, except to name a zip whose directory cannot be read: a file ``b`` that fidkit wrote
  is recognised as what it is.
* `sniff` reads the array headers only (names, shapes, dtypes; no array data, nothing unpickled) and
  says what the file is (`Kind`): statistics, features, images, or unknown.
* `read` loads named arrays with ``allow_pickle=False`` (a ``.npy`` memory-mapped on request).
* `require` returns the sniffed file when it is one of the kinds needed and otherwise raises one
  `InputError` line: ``"<path>: <what was found>; <what to do>"``.

What each kind is, in the order the rules are tried (`sniff`):

=============  ===================================================================================
``stats``      fidkit's ``fidkit-stats-v1`` files, and any file with arrays ``mu`` and ``sigma``:
               pytorch-fid and TTUR (``np.savez(f, mu=..., sigma=...)``), clean-fid's statistics
               (``np.savez_compressed``, same keys), the ADM evaluator's reference batches
               (``mu``/``sigma`` plus spatial ``mu_s``/``sigma_s`` and ``arr_0`` images); `stats_layout`
               says which of these a file is, `read_stats` reads its pool or spatial moments
``features``   fidkit's ``fidkit-features-v1`` files (``features``, optional ``logits``, ``names``),
               clean-fid's KID files (``feats``), and a lone 2-D (N, d) array
``images``     a lone array of ndim 3 (N, H, W) or 4 (N, H, W, C) / (N, C, H, W); in an ``.npz`` with
               several arrays, the first of ``images``, ``arr_0``, ``x`` that has ndim 3 or 4
``unknown``    anything else: statistics under other names (``mean``/``cov``, ``m``/``s``), a lone
               array named like a statistic, a pickled object (object dtype), a fidkit file of
               another format version
=============  ===================================================================================

Statistics under other names are never accepted silently: `require` names the arrays found, the keys
expected and gives a one-line ``python -c`` that renames them. Pickled objects are never unpickled
(unpickling runs arbitrary code); the message gives the one line that converts a file the user
trusts. Sources: the ``.npy`` format is NEP 1 (numpy.lib.format, versions 1.0-3.0); an ``.npz`` is a
zip of ``<name>.npy`` members as ``numpy.savez`` writes them (PKWARE APPNOTE, local header
``PK\\x03\\x04``, end of central directory ``PK\\x05\\x06``).
"""

from __future__ import annotations

import ast
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Literal, NamedTuple

import numpy as np

from .errors import InputError

#: Format tags fidkit writes in a 0-d ``format`` array (`fidkit.stats.Stats.save`, `FeatureResult.save`).
STATS_FORMAT = "fidkit-stats-v1"
FEATURES_FORMAT = "fidkit-features-v1"

NPY_MAGIC = b"\x93NUMPY"
#: A zip starts with a local file header, or, when it has no members, with its end-of-directory record.
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

Kind = Literal["stats", "features", "images", "unknown"]
Container = Literal["npy", "npz", "zip"]

#: numpy's own limit on a header's length (``numpy.lib.format`` ``max_header_size``): larger ones are refused.
MAX_HEADER_SIZE = 10_000
#: Array names that mean statistics: a lone array with one of them is not taken for features or images.
_STATS_NAMES = frozenset({"mu", "sigma", "mean", "means", "mu1", "mu2", "sigma1", "sigma2", "cov",
                          "covariance", "cov_matrix", "m", "s", "var", "std"})
#: Where an .npz with several arrays keeps its images, in order of preference.
_IMAGE_NAMES = ("images", "arr_0", "x")
#: What zipfile, zlib and numpy raise on a truncated or corrupt archive (a bad CRC is BadZipFile; an
#: unknown compression method NotImplementedError; an encrypted member RuntimeError).
_ZIP_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, struct.error,
               NotImplementedError, RuntimeError, UnicodeDecodeError)
#: The name `sniff` and `read` give the one array of a .npy file (numpy's name for a positional array).
NPY_NAME = "arr_0"

_WHAT = {"stats": "statistics", "features": "features", "images": "image array"}
_NOT = {"stats": "a statistics file", "features": "a features file", "images": "an image array"}
_EXPECTED = {
    "stats": "'mu' and 'sigma'",
    "features": "a 2-D (N, d) array, or 'features' (fidkit) or 'feats' (clean-fid)",
    "images": "one array of shape (N, H, W), (N, H, W, C) or (N, C, H, W)",
}
_TODO = {
    "stats": "compute statistics with `fidkit stats INPUT -o FILE`, or save them with "
             "np.savez(FILE, mu=mean, sigma=cov)",
    "features": "compute features with `fidkit features INPUT -o FILE`, or save an (N, d) array with "
                "np.save(FILE, features)",
    "images": "save images as one (N, H, W, C) array with np.save(FILE, images)",
}


class ArrayInfo(NamedTuple):
    """One array's header: shape and dtype (object dtype means it is pickled), and its storage order."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool = False

    @property
    def pickled(self) -> bool:
        """Returns True if reading the array would unpickle Python objects (its dtype holds objects)."""
        return bool(self.dtype.hasobject)

    @property
    def nbytes(self) -> int:
        """Returns the size of the array's data in bytes (meaningless for pickled arrays)."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def describe(self) -> str:
        """Returns ``"(10, 28, 28, 3) uint8"``: shape and dtype, as messages show them."""
        dtype = "pickled objects" if self.pickled else str(self.dtype)
        return f"{self.shape} {dtype}"


@dataclass(frozen=True)
class NpFile:
    """What a .npy/.npz file holds, from its headers: container, arrays, kind, and the main array.

    ``arrays`` maps each array's name (a .npy's one array is ``"arr_0"``) to its `ArrayInfo`, in file
    order; ``main`` names the array holding the features or images (None for statistics and unknown
    files); ``format`` is fidkit's format tag when the file has one.
    """

    path: Path
    container: Literal["npy", "npz"]
    arrays: MappingProxyType[str, ArrayInfo]
    kind: Kind
    main: str | None = None
    format: str | None = None

    @property
    def pickled(self) -> tuple[str, ...]:
        """Returns the names of the arrays that hold pickled objects (never read by fidkit)."""
        return tuple(k for k, v in self.arrays.items() if v.pickled)

    def found(self) -> str:
        """Returns what the file holds in a few words, for messages: ``"arrays ['cov', 'mean']"``."""
        if self.container == "npy":
            (info,) = self.arrays.values()
            if info.pickled:
                return "a pickled Python object (.npy of dtype object)"
            return f"one {info.describe()} array"
        if not self.arrays:
            return "no arrays"
        return f"arrays {sorted(self.arrays)}"


# --- the container, from the first bytes ---------------------------------------------------------


def container(path: str | os.PathLike[str]) -> Container | None:
    """Returns "npy", "npz" or "zip" from the content of the file at ``path``; None for anything else.

    "npz" is a zip whose members are all ``.npy`` arrays (at least one), as ``numpy.savez`` writes it;
    "zip" is any other zip (e.g. an archive of images). A zip whose directory cannot be read
    (truncated) is "npz" when its name ends in ``.npz`` and "zip" otherwise. None for folders, missing
    files and files that are neither numpy nor zip. Raises InputError if the file cannot be opened.
    """
    p = Path(path)
    if not p.is_file():
        return None
    head = _head(p, 8)
    if head.startswith(NPY_MAGIC):
        return "npy"
    if not head.startswith(ZIP_MAGICS):
        return None
    try:
        with zipfile.ZipFile(p) as zf:
            members = [m for m in zf.namelist() if not m.endswith("/")]
    except _ZIP_ERRORS:
        return "npz" if p.name.lower().endswith(".npz") else "zip"
    return "npz" if members and all(m.endswith(".npy") for m in members) else "zip"


def _head(p: Path, n: int) -> bytes:
    try:
        with open(p, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise InputError(f"{p}: cannot open ({exc.strerror or exc}); check the path and its "
                         f"permissions") from None


# --- headers --------------------------------------------------------------------------------------


class _BadHeader(Exception):
    """An .npy header that is truncated or malformed; the message says which."""


def _read_header(fh: IO[bytes]) -> tuple[ArrayInfo, int]:
    """Returns (the array's header, the header's length in bytes) from a file object at an .npy start."""
    magic = fh.read(8)
    if len(magic) < 8:
        raise _BadHeader(f"truncated: {len(magic)} bytes, shorter than an .npy header")
    if not magic.startswith(NPY_MAGIC):
        raise _BadHeader(f"not an .npy array (starts with {magic[:6]!r}, not {NPY_MAGIC!r})")
    major, minor = magic[6], magic[7]
    if major not in (1, 2, 3):
        raise _BadHeader(f".npy format version {major}.{minor}, which this numpy format reader does "
                         f"not know (1.0-3.0)")
    size_len = 2 if major == 1 else 4
    raw = fh.read(size_len)
    if len(raw) < size_len:
        raise _BadHeader("truncated inside the .npy header")
    hlen = int.from_bytes(raw, "little")
    if hlen > MAX_HEADER_SIZE:
        raise _BadHeader(f".npy header of {hlen} bytes, more than numpy's limit of {MAX_HEADER_SIZE}")
    text = fh.read(hlen)
    if len(text) < hlen:
        raise _BadHeader("truncated inside the .npy header")
    try:
        header = ast.literal_eval(text.decode("utf8" if major == 3 else "latin1"))
        shape, fortran = header["shape"], header["fortran_order"]
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except (SyntaxError, ValueError, TypeError, KeyError, UnicodeDecodeError, MemoryError,
            RecursionError):
        raise _BadHeader("malformed .npy header") from None
    if (not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape)
            or not isinstance(fortran, bool)):
        raise _BadHeader(f"malformed .npy header (shape {shape!r})")
    return ArrayInfo(shape, dtype, fortran), 8 + size_len + hlen


def _truncation(info: ArrayInfo, header_len: int, size: int) -> str | None:
    """Returns why ``size`` bytes cannot hold the array announced by its header, or None if they can."""
    if info.pickled:
        return None  # a pickle's length is not in its header
    need = header_len + info.nbytes
    if size < need:
        return (f"truncated: the header announces a {info.describe()} array ({need} bytes with the "
                f"header) but only {size} bytes are there")
    return None


def _bad(p: Path, found: str, todo: str = "recreate the file") -> InputError:
    return InputError(f"{p}: {found}; {todo}")


def sniff(path: str | os.PathLike[str]) -> NpFile:
    """Returns what the .npy/.npz file at ``path`` holds, reading headers only.

    The container is told by content (`container`); each array's name, shape and dtype comes from its
    header; an array's data is never read (except fidkit's tiny 0-d ``format`` tag) and nothing is
    unpickled. Raises InputError, naming the file and what was found, if the file is missing, a
    folder, empty, neither .npy nor .npz, a zip without ``.npy`` members, or truncated (the data is
    shorter than the headers announce). The kind rules are in the module docstring.
    """
    p = Path(path)
    if p.is_dir():
        raise _bad(p, "a folder, not a numpy .npy/.npz file", "pass the file inside it")
    if not p.exists():
        raise _bad(p, "no such file", "check the path")
    size = p.stat().st_size
    if size == 0:
        raise _bad(p, "empty file (0 bytes)", "the write that made it failed; recreate it")
    kind = container(p)
    if kind == "npy":
        arrays = {NPY_NAME: _npy_header(p, size)}
    elif kind == "npz":
        arrays = _npz_headers(p)
    elif kind == "zip":
        members = _zip_members(p)
        if members is None:
            raise _bad(p, "a zip file whose directory cannot be read (truncated or corrupt)")
        raise _bad(p, f"a zip archive with {members} but not only .npy arrays, so not an .npz",
                   "pass an .npz as numpy.savez writes it (or, for a zip of images, an image input)")
    else:
        raise _bad(p, f"neither a numpy .npy nor an .npz file (it starts with {_head(p, 8)!r}; an .npy "
                      f"starts with {NPY_MAGIC!r}, an .npz with {ZIP_MAGICS[0]!r})",
                   "pass a file written by numpy.save/savez or by fidkit")
    fmt = _format_tag(p, kind, arrays)
    kind_, main = _classify(arrays, fmt)
    return NpFile(p, kind, MappingProxyType(arrays), kind_, main, fmt)


def _npy_header(p: Path, size: int) -> ArrayInfo:
    try:
        with open(p, "rb") as fh:
            info, hlen = _read_header(fh)
    except _BadHeader as exc:
        raise _bad(p, f"an .npy file, {exc}") from None
    except OSError as exc:
        raise _bad(p, f"cannot be read ({exc})", "check the file and its permissions") from None
    problem = _truncation(info, hlen, size)
    if problem:
        raise _bad(p, f"an .npy file, {problem}")
    return info


def _zip_members(p: Path) -> str | None:
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
    except _ZIP_ERRORS:
        return None
    shown = ", ".join(repr(n) for n in names[:5])
    return f"members {shown}{', ...' if len(names) > 5 else ''}" if names else "no members"


def _npz_headers(p: Path) -> dict[str, ArrayInfo]:
    arrays: dict[str, ArrayInfo] = {}
    try:
        with zipfile.ZipFile(p) as zf:
            for member in zf.infolist():
                if member.is_dir():
                    continue
                name = member.filename[:-4]
                with zf.open(member) as fh:
                    info, hlen = _read_header(fh)
                problem = _truncation(info, hlen, member.file_size)
                if problem:
                    raise _BadHeader(f"array {name!r} is {problem}")
                arrays[name] = info
    except _BadHeader as exc:
        raise _bad(p, f"an .npz file whose {exc}") from None
    except _ZIP_ERRORS as exc:
        raise _bad(p, f"an .npz (zip) file that cannot be read, truncated or corrupt ({type(exc).__name__}: "
                      f"{exc})") from None
    return arrays


def _format_tag(p: Path, kind: Literal["npy", "npz"], arrays: dict[str, ArrayInfo]) -> str | None:
    """Returns the 0-d string ``format`` array fidkit writes, or None if there is none."""
    info = arrays.get("format")
    if kind != "npz" or info is None or info.shape != () or info.dtype.kind != "U" \
            or info.dtype.itemsize > 1024:
        return None
    return str(_load(p, kind, ["format"], mmap=False)["format"])


def _classify(arrays: dict[str, ArrayInfo], fmt: str | None) -> tuple[Kind, str | None]:
    def usable(name: str, ndims: tuple[int, ...]) -> bool:
        info = arrays.get(name)
        return info is not None and not info.pickled and len(info.shape) in ndims

    # Statistics are told by their names; their shapes are checked where they are read (Stats).
    has_stats = "mu" in arrays and "sigma" in arrays
    plain_stats = has_stats and not (arrays["mu"].pickled or arrays["sigma"].pickled)
    if fmt is not None and fmt.startswith("fidkit-"):
        if fmt == STATS_FORMAT and plain_stats:
            return "stats", None
        if fmt == FEATURES_FORMAT and usable("features", (2,)):
            return "features", "features"
        return "unknown", None
    if has_stats:
        return ("stats", None) if plain_stats else ("unknown", None)
    for name in ("features", "feats"):
        if name in arrays:
            return ("features", name) if usable(name, (2,)) else ("unknown", None)
    if len(arrays) == 1:
        (name,) = arrays
        if name.lower() not in _STATS_NAMES:
            if usable(name, (2,)):
                return "features", name
            if usable(name, (3, 4)):
                return "images", name
        return "unknown", None
    for name in _IMAGE_NAMES:
        if usable(name, (3, 4)):
            return "images", name
    return "unknown", None


# --- reading --------------------------------------------------------------------------------------


def read(source: str | os.PathLike[str] | NpFile, names: list[str] | tuple[str, ...] | None = None, *,
         mmap: bool = False) -> dict[str, np.ndarray]:
    """Returns ``{name: array}`` for ``names`` (all arrays when None) of a .npy/.npz file.

    ``source`` is a path or a `NpFile` from `sniff`; a .npy's one array is named ``"arr_0"``. Arrays
    keep their stored dtype and shape. ``mmap=True`` memory-maps a .npy read-only (``mmap_mode="r"``,
    for large image arrays); an .npz member is always read into memory. Never unpickles: raises
    InputError for a pickled array (saying how to convert a trusted file), for a name the file does
    not have, and for data that is truncated or corrupt.
    """
    info = source if isinstance(source, NpFile) else sniff(source)
    wanted = list(info.arrays) if names is None else list(names)
    missing = [n for n in wanted if n not in info.arrays]
    if missing:
        raise _bad(info.path, f"no array {missing[0]!r} (found {info.found()})",
                   "pass a file that has it")
    pickled = [n for n in wanted if info.arrays[n].pickled]
    if pickled:
        raise InputError(_pickle_message(info, ("stats",) if {"mu", "sigma"} & set(pickled) else ()))
    return _load(info.path, info.container, wanted, mmap=mmap)


def _load(p: Path, kind: Literal["npy", "npz"], names: list[str], *, mmap: bool) -> dict[str, np.ndarray]:
    try:
        if kind == "npy":
            if not names:
                return {}
            if mmap:
                return {NPY_NAME: np.load(p, mmap_mode="r", allow_pickle=False)}
            with open(p, "rb") as fh:
                return {NPY_NAME: np.lib.format.read_array(fh, allow_pickle=False)}
        out = {}
        with zipfile.ZipFile(p) as zf:
            for name in names:
                with zf.open(name + ".npy") as fh:
                    out[name] = np.lib.format.read_array(fh, allow_pickle=False)
        return out
    except (*_ZIP_ERRORS, KeyError) as exc:
        raise _bad(p, f"cannot be read, truncated or corrupt ({type(exc).__name__}: {exc})") from None


# --- statistics files: which tool's layout, and their pool and spatial moments ---------------------

#: The layouts of statistics files told apart by `stats_layout`, with the tool that writes each.
STATS_LAYOUTS = MappingProxyType({
    "fidkit": "fidkit's own file (format tag fidkit-stats-v1, with n and provenance)",
    "adm": "an ADM evaluator reference batch (openai/guided-diffusion evaluations/evaluator.py): pool3 "
           "mu/sigma, spatial mu_s/sigma_s and images",
    "compressed": "mu/sigma in a compressed .npz (numpy.savez_compressed, as clean-fid writes its "
                  "statistics)",
    "plain": "mu/sigma in a plain .npz (numpy.savez, as TTUR and pytorch-fid write them)",
})
#: The ADM evaluator's names for the spatial statistics (sFID: Nash et al. 2021, mixed_6/conv features).
SPATIAL_NAMES = ("mu_s", "sigma_s")


class StatsLayout(NamedTuple):
    """How a statistics file is laid out: ``layout`` (a key of `STATS_LAYOUTS`), whether it holds spatial
    statistics (``mu_s``/``sigma_s``, shapes in ``spatial_dim``), and the name of an image array it also
    holds (the ADM reference batches' 10,000 ``arr_0`` images), or None."""

    layout: str
    dim: int | None
    spatial_dim: int | None
    images: str | None

    def describe(self) -> str:
        """Returns the layout in words, for listings: ``"plain .npz (TTUR, pytorch-fid): mu (2048,)"``."""
        text = STATS_LAYOUTS[self.layout]
        if self.dim is not None:
            text += f"; pool statistics d = {self.dim}"
        if self.spatial_dim is not None:
            text += f"; spatial statistics d = {self.spatial_dim}"
        return text


def stats_layout(source: str | os.PathLike[str] | NpFile) -> StatsLayout:
    """Returns the `StatsLayout` of a statistics file, from its headers (and, for a zip, its member table).

    ``"fidkit"``: fidkit's format tag; ``"adm"``: ``mu``, ``sigma``, ``mu_s`` and ``sigma_s`` (the ADM
    evaluator reads ``mu_s``/``sigma_s`` whenever ``mu`` is there, evaluations/evaluator.py
    ``read_statistics``); ``"compressed"``: ``mu`` stored deflated (``numpy.savez_compressed``: clean-fid's
    ``make_custom_stats`` and its published files); ``"plain"``: stored (``numpy.savez``: TTUR's
    ``fid_stats_*.npz``, pytorch-fid ``--save-stats``). Raises InputError (see `require`) when the file is
    not statistics.
    """
    info = require(source, "stats")
    mu = info.arrays["mu"]
    dim = mu.shape[0] if len(mu.shape) == 1 else None
    spatial = all(n in info.arrays for n in SPATIAL_NAMES)
    s_info = info.arrays.get("mu_s")
    spatial_dim = s_info.shape[0] if spatial and s_info is not None and len(s_info.shape) == 1 else None
    images = next((n for n in _IMAGE_NAMES if n in info.arrays and len(info.arrays[n].shape) == 4
                   and not info.arrays[n].pickled), None)
    if info.format == STATS_FORMAT:
        layout = "fidkit"
    elif spatial:
        layout = "adm"
    else:
        layout = "compressed" if _compressed(info.path, "mu.npy") else "plain"
    return StatsLayout(layout, dim, spatial_dim, images)


def _compressed(p: Path, member: str) -> bool:
    try:
        with zipfile.ZipFile(p) as zf:
            return zf.getinfo(member).compress_type != zipfile.ZIP_STORED
    except (*_ZIP_ERRORS, KeyError):
        return False


def read_stats(source: str | os.PathLike[str] | NpFile, *, spatial: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(mean, covariance)`` as stored in a statistics file: ``mu``/``sigma``, or with ``spatial``
    the ADM reference batches' ``mu_s``/``sigma_s`` (the sFID statistics: 17x17x7 = 2023 dimensions of
    ``mixed_6/conv``; Nash et al., "Generating images with sparse representations", ICML 2021).

    The arrays keep their stored dtype; their shapes are checked where they are used (`fidkit.stats.Stats`).
    Raises InputError naming the file when it is not statistics, or, with ``spatial``, has no spatial
    statistics (naming the arrays it has).
    """
    info = require(source, "stats")
    names = SPATIAL_NAMES if spatial else ("mu", "sigma")
    missing = [n for n in names if n not in info.arrays]
    if missing:
        raise _bad(info.path, f"no spatial statistics {list(SPATIAL_NAMES)} (found {info.found()})",
                   "sFID needs an ADM evaluator reference batch (VIRTUAL_*.npz, `fidkit refstats get`) or "
                   "spatial statistics computed with `fidkit stats` under the sfid metric")
    data = read(info, list(names))
    return data[names[0]], data[names[1]]


# --- the error for a file that is not what was needed ---------------------------------------------


def require(source: str | os.PathLike[str] | NpFile, *kinds: Kind) -> NpFile:
    """Returns the sniffed file if its kind is one of ``kinds``; raises InputError otherwise.

    The message is one line, ``"<path>: not a <kind> file: found <...>, expected <...>; <what to do>"``:
    the arrays found and the keys expected; for statistics under other names, a ``python -c`` line
    that renames them; for a pickled object, a line that converts a file the user trusts (fidkit never
    unpickles); for a fidkit file of another format version, upgrade or recreate.
    """
    if not kinds:
        raise TypeError("require() needs at least one kind")
    info = source if isinstance(source, NpFile) else sniff(source)
    if info.kind in kinds:
        return info
    raise InputError(mismatch_message(info, kinds))


def mismatch_message(info: NpFile, kinds: tuple[str, ...]) -> str:
    """Returns the one-line message `require` raises for ``info`` when ``kinds`` were needed."""
    p = info.path
    what = " or ".join(_NOT[k] for k in kinds)
    expected = "; or ".join(_EXPECTED[k] for k in kinds)
    if info.format is not None and info.format.startswith("fidkit-") \
            and info.format not in (STATS_FORMAT, FEATURES_FORMAT):
        return (f"{p}: fidkit file format {info.format!r}, which this fidkit does not read (it reads "
                f"{STATS_FORMAT!r} and {FEATURES_FORMAT!r}); upgrade fidkit or recreate the file")
    if info.format in (STATS_FORMAT, FEATURES_FORMAT) and info.kind == "unknown":
        return (f"{p}: a {info.format!r} file lacking its arrays (found {info.found()}); recreate it "
                f"with fidkit")
    if info.pickled:
        return _pickle_message(info, kinds)
    if info.kind != "unknown":
        main = info.arrays[info.main] if info.main else None
        found = f"{_WHAT[info.kind]} {main.describe()}" if main else _WHAT[info.kind]
        return f"{p}: not {what}: found {found}, expected {expected}; {_TODO[kinds[0]]}"
    if "features" in kinds:
        for name in ("features", "feats"):
            if name in info.arrays and len(info.arrays[name].shape) != 2:
                return (f"{p}: not a features file: found {name!r} {info.arrays[name].describe()}, "
                        f"expected a 2-D (N, d) array; {_TODO['features']}")
    pair = _stats_pair(info) if "stats" in kinds else None
    if pair is not None:
        mean, cov = pair
        fixed = p.with_name(p.stem + "-fixed.npz")
        return (f"{p}: not a statistics file: found arrays {sorted(info.arrays)}, expected 'mu' and "
                f"'sigma'; if {mean!r} and {cov!r} are the mean and covariance, rename them: python -c "
                f"\"import numpy as np; z = np.load({str(p)!r}); np.savez({str(fixed)!r}, mu=z[{mean!r}], "
                f"sigma=z[{cov!r}])\"")
    return f"{p}: not {what}: found {_found_detail(info)}, expected {expected}; {_TODO[kinds[0]]}"


def _found_detail(info: NpFile) -> str:
    if info.container == "npy":
        return info.found()
    if not info.arrays:
        return "no arrays"
    return f"arrays {sorted(info.arrays)}"


def _stats_pair(info: NpFile) -> tuple[str, str] | None:
    """Returns the names of a (d,) and a (d, d) numeric array, if the file has such a pair."""
    vectors = [(k, v.shape[0]) for k, v in info.arrays.items() if len(v.shape) == 1 and not v.pickled]
    squares = [(k, v.shape[0]) for k, v in info.arrays.items()
               if len(v.shape) == 2 and v.shape[0] == v.shape[1] and not v.pickled]
    for k1, d1 in vectors:
        for k2, d2 in squares:
            if d1 == d2:
                return k1, k2
    return None


def _pickle_message(info: NpFile, kinds: tuple[str, ...]) -> str:
    p = info.path
    found = info.found() if info.container == "npy" else f"pickled arrays {list(info.pickled)}"
    if info.container == "npy":
        out = p.with_name(p.stem + ".npz")
        if "stats" in kinds:
            code = (f"d = np.load({str(p)!r}, allow_pickle=True).item(); "
                    f"np.savez({str(out)!r}, mu=d['mu'], sigma=d['sigma'])")
            hint = " (with the dict's own key names)"
        else:
            code = (f"d = np.load({str(p)!r}, allow_pickle=True).item(); "
                    f"np.savez({str(out)!r}, **{{k: np.asarray(v) for k, v in d.items()}})")
            hint = ""
    else:
        out = p.with_name(p.stem + "-fixed.npz")
        code = (f"z = np.load({str(p)!r}, allow_pickle=True); "
                f"np.savez({str(out)!r}, **{{k: np.asarray(z[k], dtype=np.float64) for k in z.files}})")
        hint = " (adjust the dtype for non-numeric arrays)"
    return (f"{p}: {found}; fidkit never unpickles files (unpickling can run any code), so convert a "
            f"file you trust to plain arrays: python -c \"import numpy as np; {code}\"{hint}")
