"""Weights file formats: which converter reads each, and telling a file's format, or what is wrong with it,
from its bytes alone, before any framework is imported.

A damaged file is reported here, naming what was found (unreadable, empty, a zip archive with no end record,
a gzip stream that stops early, an unknown format), so that no ``zipfile.BadZipFile`` or ``EOFError`` from a
user's file ever reaches the caller, and no framework is loaded just to fail on it.
"""

from __future__ import annotations

import json
import os
import tarfile
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from ..errors import WeightsError

#: How each file format is converted (``"module:function"``, path -> canonical arrays), and the runtime whose
#: framework the converter imports.
FORMATS: Mapping[str, tuple[str | None, str | None]] = MappingProxyType({
    "canonical-npz": (None, None),
    "torch-state-dict": ("fidkit.backends.torch.convert:from_state_dict", "torch"),
    "torchscript": ("fidkit.backends.torch.convert:from_torchscript", "torch"),
    "tf-graphdef": ("fidkit.backends.tf.convert:from_graphdef", "tf"),
    "tf-graphdef-tgz": ("fidkit.backends.tf.convert:from_graphdef", "tf"),
    "safetensors": ("fidkit.backends.torch.convert:from_safetensors", "torch"),
})

#: What to do about a damaged file that was passed explicitly: the default advice of `detect_format`.
REPLACE_IT = "download it again, or pass another file with weights=/--weights"

_ZIP = b"PK\x03\x04"
_GZIP = b"\x1f\x8b"
_PICKLE = b"\x80"  # a legacy (pre-zip) torch.save pickle starts with the pickle PROTO opcode


def detect_format(path: str | os.PathLike[str], *, advice: str = REPLACE_IT) -> str:
    """Returns the format name of a weights file (a key of `FORMATS`), read from its content.

    Only cheap checks run here (the first bytes, a zip archive's central directory); `damage` also reads a
    gzip stream to its end. Raises `WeightsError`, one line naming the file, what was found (unreadable,
    empty, a truncated zip archive, a zip of neither kind, an unknown format) and then ``advice``.
    """
    fmt, problem = _sniff(Path(path))
    if fmt is None:
        raise WeightsError(f"{path}: {problem}; {advice}")
    return fmt


def damage(path: str | os.PathLike[str], fmt: str | None = None) -> str | None:
    """Returns what is wrong with a weights file's container, or None when it looks intact.

    ``fmt`` is the format when already detected. Beyond `detect_format`'s checks, a ``.tgz`` is read to its
    end: a gzip stream cut short is found only there. The content (the network's arrays) is the converter's
    to check. Raises nothing.
    """
    p = Path(path)
    if fmt is None:
        fmt, problem = _sniff(p)
        if fmt is None:
            return problem
    if fmt == "tf-graphdef-tgz":
        return _tar_problem(p)
    if fmt == "safetensors":
        return _safetensors_problem(p)
    return None


def _sniff(p: Path) -> tuple[str | None, str]:
    """Returns (format, "") or (None, what is wrong with ``p``), from its header and zip directory."""
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            first = f.read(9)
        head = first[:4]
        tar = size > 0 and head[:2] != _GZIP and p.suffix in (".tar", ".tgz") and tarfile.is_tarfile(p)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return None, "is empty (0 bytes)"
    if head[:2] == _GZIP or tar:
        return "tf-graphdef-tgz", ""
    if head == _ZIP:
        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return None, (f"is truncated: a zip archive (the container of .pth, .pt and .npz weights) with no "
                          f"readable end record, {size} bytes")
        if names and all(n.endswith(".npy") for n in names):
            return "canonical-npz", ""
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return "torchscript", ""
        if any(n.endswith("data.pkl") for n in names):
            return "torch-state-dict", ""
        return None, ("is a zip archive but not a weights file: neither a canonical .npz (only .npy members) "
                      "nor a torch file (no data.pkl)")
    if first[8:9] == b"{" and int.from_bytes(first[:8], "little") < size:
        return "safetensors", ""  # an 8-byte little-endian header length, then the JSON header
    if head[:1] == _PICKLE:
        return "torch-state-dict", ""
    if p.suffix == ".pb":
        return "tf-graphdef", ""
    return None, ("unknown weights format: not a zip archive (.npz, .pth, .pt), a legacy torch pickle (.pth), "
                  "a gzip/tar archive (.tgz), a TF GraphDef (.pb) or a safetensors file")


def _tar_problem(p: Path) -> str | None:
    """Returns what is wrong with the (gzipped) tar archive ``p`` after reading it to its end, or None."""
    try:
        size = p.stat().st_size
        with tarfile.open(p, "r:*") as tar:
            for _member in tar:
                pass
    except EOFError:
        return f"is truncated: its gzip stream ends early, after {size} bytes"
    except (tarfile.TarError, OSError, zlib.error) as exc:
        if "unexpected end" in str(exc):
            return f"is truncated: its tar archive ends early, after {size} bytes"
        return "is not a tar archive: neither a gzip-compressed tar (.tgz) nor a plain one (.tar)"
    return None


def _safetensors_problem(p: Path) -> str | None:
    """Returns what is wrong with the safetensors file ``p`` (its JSON header unreadable, or its tensors'
    data ending past the file: truncated), or None. Reads only the header."""
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 8 + n <= size else None
    except (OSError, ValueError) as exc:
        return f"is not a readable safetensors file ({type(exc).__name__})"
    if not isinstance(header, dict):
        return f"is truncated: its safetensors header ends past the file's {size} bytes"
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and len(v.get("data_offsets", ())) == 2]
    need = 8 + n + max(ends, default=0)
    if need > size:
        return f"is truncated: a safetensors file of {size} bytes whose tensors end at byte {need}"
    return None
