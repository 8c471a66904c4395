"""Canonical weights files: the framework-free ``.npz`` every runtime loads, its content digest, and the
conversion of every other format into it, once, cached by the source file's SHA-256.

A canonical weights file is an ``.npz`` of named float32 arrays (``f"{node}.{param}"``, PyTorch layouts),
with no framework in it. Its digest is the SHA-256 of its *content* (sorted names, dtypes, shapes and
bytes), not of the zip, so the same network converted from pytorch-fid's ``.pth`` and from TensorFlow's
``.tgz`` has one digest when the conversion is exact.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..errors import BackendUnavailableError, FidkitError, WeightsError
from . import files
from .cache import _lock, canonical_dir
from .files import FRAMEWORKS, _read_json, sha256_file
from .formats import FORMATS, REPLACE_IT, damage, detect_format

#: Version tag mixed into every canonical digest, so a change of the digest recipe changes every digest.
_DIGEST_TAG = b"fidkit-canonical-weights-v1\n"


def canonical_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """Returns the SHA-256 of canonical content: sorted names, little-endian dtypes, shapes and bytes."""
    h = hashlib.sha256(_DIGEST_TAG)
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        shape = ",".join(str(s) for s in a.shape)
        h.update(f"{name}\t{a.dtype.str}\t{shape}\n".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def load_canonical(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Returns the float32 arrays of a canonical ``.npz``, checked to be float32 and finite.

    Raises `WeightsError` naming the file when it is not a readable ``.npz`` of float32 arrays (truncated,
    not a zip, pickled objects) or holds an array that is not float32 or not finite.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise WeightsError(f"{path}: not a readable canonical weights .npz ({reason}); expected an .npz of "
                           f"float32 arrays — reconvert it with `fidkit weights convert`") from None
    _check_canonical(arrays, str(path))
    return arrays


def _check_canonical(arrays: Mapping[str, np.ndarray], where: str) -> None:
    if not arrays:
        raise WeightsError(f"{where}: holds no arrays; expected named float32 parameter arrays")
    for k, a in arrays.items():
        if a.dtype != np.float32:
            raise WeightsError(f"{where}: array {k!r} is {a.dtype}; canonical weights are float32 — "
                               f"convert them with `fidkit weights convert`")
        if not np.all(np.isfinite(a)):
            raise WeightsError(f"{where}: array {k!r} holds NaN or infinite values; the file is corrupt — "
                               f"download it again")


def save_canonical(arrays: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> str:
    """Returns the canonical digest after writing ``arrays`` atomically to an ``.npz`` at ``path``.

    Raises `WeightsError` (and writes nothing) when ``arrays`` is empty or holds a non-float32 or
    non-finite array.
    """
    _check_canonical(arrays, str(path))
    final = Path(path)
    with atomic_path(final) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return canonical_digest(arrays)


def convert(source: str | os.PathLike[str], fmt: str | None = None) -> dict[str, np.ndarray]:
    """Returns the canonical float32 arrays of a weights file in any supported format.

    ``fmt`` is the file's format (a key of `FORMATS`), detected from its content when None. The file's
    container is checked before any framework is imported. Raises `WeightsError` naming the file when it
    is damaged (empty, truncated, not a zip or tar archive, an unknown format) or its converter cannot read
    it, and `BackendUnavailableError` when the framework its converter needs is not installed.
    """
    fmt = fmt or detect_format(source)
    if fmt == "canonical-npz":
        return load_canonical(source)
    broken = damage(source, fmt)
    if broken:
        raise WeightsError(f"{source}: {broken}; {REPLACE_IT}")
    converter, runtime = FORMATS[fmt]
    if converter is None or runtime is None:
        raise WeightsError(f"{source}: no converter is registered for format {fmt!r}")
    if not files.runtime_installed(runtime):
        raise BackendUnavailableError(f"{source}: converting a {fmt} file needs {FRAMEWORKS[runtime]!r}: "
                                      f"pip install 'fidkit[{runtime}]', or convert it once elsewhere with "
                                      f"`fidkit weights convert` and pass the .npz")
    try:
        arrays = _load_object(converter)(str(source))
    except (FidkitError, ImportError):  # a broken framework install is not the file's fault
        raise
    except Exception as exc:  # a user's file reaches the framework's parser, which may raise anything
        reason = " ".join(str(exc).split())[:200] or "no message"
        raise WeightsError(f"{source}: the {fmt} converter cannot read it ({type(exc).__name__}: {reason}); "
                           f"{REPLACE_IT}") from exc
    _check_canonical(arrays, f"{source} (converted)")
    return arrays


def _load_object(ref: str) -> Any:
    """Returns the object named by ``"package.module:attribute"`` (a converter of `FORMATS`)."""
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def to_canonical(source: str | os.PathLike[str], source_sha256: str | None = None) -> tuple[Path, str]:
    """Returns (canonical path, digest) for a weights file, converting it once and caching it by its SHA-256.

    A canonical ``.npz`` is used where it lies; other formats are converted into
    ``canonical_dir()/<source sha256>.npz`` with a ``.json`` sidecar recording the digest. The cache's
    lock is taken only to convert, and removed afterwards; a damaged file fails before anything is written.
    Raises what `detect_format`, `load_canonical` and `convert` raise.
    """
    src = Path(source)
    fmt = detect_format(src)
    if fmt == "canonical-npz":
        return src, canonical_digest(load_canonical(src))
    sha = source_sha256 or sha256_file(src)
    out = canonical_dir() / f"{sha}.npz"
    sidecar = out.with_suffix(".json")
    cached = _cached(out, sidecar, sha)
    if cached is not None:
        return out, cached
    broken = damage(src, fmt)  # before the lock: a damaged file leaves nothing in the cache
    if broken:
        raise WeightsError(f"{src}: {broken}; {REPLACE_IT}")
    with _lock(out):
        cached = _cached(out, sidecar, sha)  # converted by another process while this one waited
        if cached is not None:
            return out, cached
        digest = save_canonical(convert(src, fmt), out)
        with atomic_path(sidecar) as tmp:
            tmp.write_text(json.dumps({"source": src.name, "source_sha256": sha, "format": fmt,
                                       "digest": digest, "size": out.stat().st_size}, indent=1))
    return out, digest


def _cached(out: Path, sidecar: Path, sha: str) -> str | None:
    """Returns the digest recorded for a conversion of the file of SHA-256 ``sha``, if it is complete."""
    meta = _read_json(sidecar)
    try:
        complete = out.is_file() and meta.get("size") == out.stat().st_size
    except OSError:
        return None
    if complete and meta.get("source_sha256") == sha and isinstance(meta.get("digest"), str):
        return meta["digest"]
    return None
