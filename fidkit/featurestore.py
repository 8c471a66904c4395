"""Feature rows held in memory up to a bound and on disk past it; block readers for memory-mapped features.

KID, the Inception Score and precision/recall/density/coverage need every feature row, not only the
O(d²) statistics FID needs (`fidkit.stats.StatsAccumulator`). At 200,000 images of 2048 float32 features
that is 1.6 GB per side. A `FeatureStore` collects rows batch by batch; while they take at most
``max_bytes`` it keeps them in memory and `FeatureStore.finalize` returns the ordinary concatenated
array (so a normal run is unchanged); past the bound it writes them to an anonymous temporary file and
`FeatureStore.finalize` returns a read-only `numpy.memmap` of it.

The bound, one mechanism: ``max_bytes=`` where a store is made, by default the environment variable
``FIDKIT_MAX_FEATURES_BYTES`` (bytes, or with a binary suffix: ``512M``, ``4G``; ``0``: always on disk;
``none``: never), else `DEFAULT_MAX_BYTES` (1 GiB per array: 130,000 rows of 2048 float32 features).
The folder is ``FIDKIT_SPILL_DIR``, else ``spill`` under fidkit's cache (`fidkit._paths.fidkit_home`),
a disk folder, not ``/tmp``, which is often memory (tmpfs).

Clean-up. The spill file is created with `tempfile.TemporaryFile`: on Linux and macOS its name is
removed at once (it never appears in the folder), on Windows it is deleted when closed, so the space is
given back when the store and the last array mapping it are released, and also when the process ends
in any way (an error, ``kill -9``): nothing is ever left behind.

Reading. The metrics read memory-mapped features through `rows` and `take`, which copy a block of rows
to float64 and then drop the block's pages from the process's mapping (``madvise(MADV_DONTNEED)``; the
data stays in the kernel's page cache), so the resident set does not grow by the 1.6 GB file as the
metric reads through it. `validated` checks such an input block by block (shape, dtype, finite values)
without making a float64 copy of it; for an ordinary array it is `fidkit._validate.features`, as before.
"""

from __future__ import annotations

import mmap
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from . import _validate
from .errors import InputError

#: Environment variable: the in-memory bound of one `FeatureStore`, in bytes (suffixes K, M, G, T: powers of 1024).
MAX_BYTES_ENV = "FIDKIT_MAX_FEATURES_BYTES"
#: Environment variable: the folder of the spill files (default: ``spill`` under fidkit's cache).
SPILL_DIR_ENV = "FIDKIT_SPILL_DIR"
#: Default bound per array, 1 GiB: 50,000 x 2048 float32 features (410 MB) and their logits stay in memory.
DEFAULT_MAX_BYTES = 1 << 30
#: Bytes of float64 rows one block read by `blocks` holds (64 MB).
BLOCK_BYTES = 1 << 26
#: Scattered rows `take` reads from a memory map between two releases of its pages.
TAKE_ROWS = 64

_SUFFIX = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}


def parse_bytes(value: str, name: str = MAX_BYTES_ENV) -> int | None:
    """Returns a byte count from ``"1073741824"``, ``"512M"``, ``"4G"`` (powers of 1024), or None for
    ``"none"`` / ``"inf"`` (no bound); raises `InputError` naming ``name`` for anything else."""
    text = str(value).strip().lower()
    if text in ("none", "inf", "unbounded"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", text)
    if not m:
        raise InputError(f"{name}={value!r}: expected a byte count such as 1073741824, 512M or 4G, "
                         f"0 (always on disk) or none (never); set {name} to one")
    return int(float(m.group(1)) * (1 << _SUFFIX[m.group(2)]))


def default_max_bytes() -> int | None:
    """Returns the bound a store gets when none is given: ``$FIDKIT_MAX_FEATURES_BYTES``, else `DEFAULT_MAX_BYTES`."""
    env = os.environ.get(MAX_BYTES_ENV)
    return DEFAULT_MAX_BYTES if env is None or not env.strip() else parse_bytes(env)


def spill_dir() -> Path:
    """Returns the folder spill files go in: ``$FIDKIT_SPILL_DIR``, else ``<fidkit cache>/spill``."""
    env = os.environ.get(SPILL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    from ._paths import fidkit_home

    return fidkit_home() / "spill"


class FeatureStore:
    """Rows of shape (B, ...) appended batch by batch, in memory up to ``max_bytes``, on disk past it.

    ``max_bytes``: the in-memory bound in bytes (None: never spill; default `default_max_bytes`);
    ``directory``: where the spill file goes (default `spill_dir`); ``label`` names the input in errors.
    The dtype and trailing shape are the first batch's; later batches are cast to that dtype. Use as a
    context manager, or call `close`: on an error the spill file is released (it has no name on disk
    either way; see the module docstring).
    """

    def __init__(self, *, max_bytes: int | None | str = "default", directory: str | os.PathLike[str] | None = None,
                 label: str = "features") -> None:
        if isinstance(max_bytes, str):
            max_bytes = default_max_bytes() if max_bytes == "default" else parse_bytes(max_bytes, "max_bytes")
        elif max_bytes is not None and (isinstance(max_bytes, bool) or int(max_bytes) < 0):
            raise InputError(f"max_bytes={max_bytes!r}: expected a byte count >= 0 or None (no bound)")
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.directory = Path(directory) if directory is not None else None
        self.label = label
        self.n = 0
        self.nbytes = 0
        self._dtype: np.dtype | None = None
        self._tail: tuple[int, ...] | None = None
        self._chunks: list[np.ndarray] = []
        self._file: IO[bytes] | None = None
        self._result: np.ndarray | None = None

    @property
    def spilled(self) -> bool:
        """Whether the rows went to disk (the bound was passed)."""
        return self._file is not None or isinstance(self._result, np.memmap)

    def append(self, rows: object) -> FeatureStore:
        """Returns self after adding a (B, ...) batch; raises `InputError` if its trailing shape differs."""
        if self._result is not None:
            raise InputError(f"{self.label}: FeatureStore.append after finalize; make a new store")
        x = np.asarray(rows)
        if x.ndim < 1:
            raise InputError(f"{self.label}: expected a batch of rows (B, ...), received a scalar")
        if self._tail is None:
            self._dtype, self._tail = x.dtype, x.shape[1:]
        elif x.shape[1:] != self._tail:
            raise InputError(f"{self.label}: a batch of shape {x.shape} after batches of rows of shape "
                             f"{self._tail}; every batch must come from the same extractor output")
        if x.dtype != self._dtype:
            x = x.astype(self._dtype)
        self.n += x.shape[0]
        self.nbytes += x.nbytes
        if self._file is None:
            self._chunks.append(x)
            if self.max_bytes is not None and self.nbytes > self.max_bytes:
                self._spill()
        else:
            self._write(x)
        return self

    def _spill(self) -> None:
        folder = self.directory if self.directory is not None else spill_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(prefix="fidkit-features-", suffix=".bin", dir=folder)
        except OSError as exc:
            raise InputError(f"{self.label}: cannot create a spill file in {folder} ({exc.strerror or exc}); "
                             f"set {SPILL_DIR_ENV} to a writable folder or raise {MAX_BYTES_ENV}") from None
        chunks, self._chunks = self._chunks, []
        for c in chunks:
            self._write(c)

    def _write(self, x: np.ndarray) -> None:
        assert self._file is not None
        try:
            self._file.write(np.ascontiguousarray(x).data)
        except OSError as exc:
            folder = self.directory if self.directory is not None else spill_dir()
            self.close()
            raise InputError(f"{self.label}: cannot write features to the spill file in {folder} "
                             f"({exc.strerror or exc}, {self.nbytes / 2**30:.2f} GiB so far); set "
                             f"{SPILL_DIR_ENV} to a folder with room or raise {MAX_BYTES_ENV}") from None

    def finalize(self) -> np.ndarray:
        """Returns all rows (N, ...): the in-memory concatenation, or a read-only `numpy.memmap` of the
        spill file; raises `InputError` when nothing was appended."""
        if self._result is not None:
            return self._result
        if self._tail is None or self._dtype is None:
            raise InputError(f"{self.label}: no rows were added")
        if self._file is None:
            if len(self._chunks) == 1:
                self._result = self._chunks[0]
            else:
                self._result = np.concatenate(self._chunks)
            self._chunks = []
            return self._result
        self._file.flush()
        shape = (self.n, *self._tail)
        if self.nbytes == 0:  # mmap cannot map an empty file
            self._result = np.empty(shape, self._dtype)
        else:
            self._result = np.memmap(self._file, dtype=self._dtype, mode="r", shape=shape)
        self._file.close()  # the mapping holds its own reference; the space is freed with the last view
        self._file = None
        return self._result

    def close(self) -> None:
        """Releases the rows held (a returned memmap stays valid until it is itself released)."""
        self._chunks = []
        self._result = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:  # a store dropped before finalize gives its file back without a warning
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.close()


def concatenate(pieces: list[np.ndarray], *, max_bytes: int | None | str = "default",
                label: str = "features") -> np.ndarray:
    """Returns the pieces (each (B, ...)) joined in order, as `FeatureStore.finalize` returns them: in
    memory up to ``max_bytes``, else memory-mapped. Empties ``pieces`` as it goes, so that each piece is
    freed once written (no second full copy in memory)."""
    store = FeatureStore(max_bytes=max_bytes, label=label)
    with store:
        pieces.reverse()
        while pieces:
            store.append(pieces.pop())
        return store.finalize()


def is_mapped(x: object) -> bool:
    """Returns whether ``x`` is a memory-mapped array (a `FeatureStore` spill, ``np.load(mmap_mode=...)``)."""
    return isinstance(x, np.memmap)


def release(x: np.ndarray) -> None:
    """Drops the pages of memory-mapped ``x`` from this process's resident set (they stay in the page
    cache and are read back on the next access); does nothing for other arrays or where unsupported."""
    mm = getattr(x, "_mmap", None)
    advise = getattr(mm, "madvise", None)
    if advise is None or not hasattr(mmap, "MADV_DONTNEED") or getattr(mm, "closed", False):
        return
    try:
        advise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):  # a closed or unusual mapping: only memory is at stake
        pass


def rows(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Returns rows ``lo:hi`` of ``x`` as float64 (a view when ``x`` is already float64 in memory)."""
    if not is_mapped(x):
        return np.asarray(x[lo:hi], dtype=np.float64)
    out = np.array(x[lo:hi], dtype=np.float64)  # always a copy: the block must not keep the mapping's pages
    release(x)
    return out


def take(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Returns the rows ``index`` (in that order) of ``x`` as a float64 array.

    From a memory map the rows are read `TAKE_ROWS` at a time, the mapping's pages dropped after each
    group: a fault on a file mapping can map a whole large folio (measured on Linux 6.18: 1000 random
    8 KB rows of a 1.6 GB file left 1.2 GB resident), so reading many scattered rows at once would make
    most of the file resident."""
    index = np.asarray(index)
    if not is_mapped(x):
        return np.asarray(x[index], dtype=np.float64)
    out = np.empty((len(index), *x.shape[1:]), dtype=np.float64)
    for lo in range(0, len(index), TAKE_ROWS):
        out[lo:lo + TAKE_ROWS] = x[index[lo:lo + TAKE_ROWS]]
        release(x)
    return out


def rows_per_block(x: np.ndarray, block_bytes: int = BLOCK_BYTES) -> int:
    """Returns how many float64 rows of ``x`` fill about ``block_bytes``."""
    per_row = 8 * max(1, int(np.prod(x.shape[1:], dtype=np.int64)))
    return max(1, block_bytes // per_row)


def blocks(x: np.ndarray, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (lo, float64 rows lo:lo+block) over ``x`` in order, releasing mapped pages as it goes."""
    step = block_rows or rows_per_block(x)
    for lo in range(0, x.shape[0], step):
        yield lo, rows(x, lo, min(lo + step, x.shape[0]))


def validated(x: object, name: str, *, min_samples: int = 2) -> np.ndarray:
    """Returns (N, d) features checked as `fidkit._validate.features` checks them.

    An ordinary input comes back as that function returns it (a float64 copy). A memory-mapped one, or
    an array whose float64 copy would pass the bound (`default_max_bytes`), is checked block by block
    (2-D, real numeric dtype, at least ``min_samples`` rows, finite) and returned as it is, so that a
    metric reads it in float64 blocks (`rows`, `take`): the numbers are the same either way (a block
    converted to float64 holds the values of the whole converted array). Raises `InputError`.
    """
    bound = default_max_bytes()
    large = (isinstance(x, np.ndarray) and x.dtype != object and bound is not None
             and x.size * 8 > bound)
    if not (is_mapped(x) or large):
        return _validate.features(x, name, min_samples=min_samples)
    arr: np.ndarray = x  # type: ignore[assignment]
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) \
            or np.iscomplexobj(arr):
        raise InputError(f"{name}: expected a real numeric array, received dtype {arr.dtype}; pass float features")
    _validate.check_feature_shape(arr, name, min_samples=min_samples)
    if np.issubdtype(arr.dtype, np.floating):
        for lo, block in blocks(arr):
            if not np.isfinite(block).all():
                bad = np.argwhere(~np.isfinite(block))[0]
                where = (int(bad[0]) + lo, int(bad[1]))
                kind = "NaN" if np.isnan(block[tuple(bad)]) else "inf"
                total = sum(int((~np.isfinite(b)).sum()) for _, b in blocks(arr))
                raise InputError(f"{name}: expected finite values, found {total} NaN/inf "
                                 f"(first: {kind} at index {where}); remove or fix those samples")
    return arr
