"""MNIST in its IDX files: a reader for the four standard files (gzip-compressed or not), checked by SHA-256.

The format is LeCun, Cortes and Burges' (http://yann.lecun.com/exdb/mnist/): a big-endian header of
two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one uint32 per
dimension, then the data in C order. The 10,000 test images ship inside the package
(``fidkit/data/mnist``) so that the offline demo needs nothing else; the training set is read from a
folder given by the caller (e.g. ``../shared/data/mnist``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import InputError

#: The folder inside the package holding the gzipped MNIST test split and its SHA256SUMS.
SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "mnist"

_PREFIX = {"train": "train", "test": "t10k"}
_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Returns the hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sha256sums(path: str | os.PathLike[str]) -> dict[str, str]:
    """Returns {file name: hex digest} from a ``sha256sum``-format file."""
    sums: dict[str, str] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not name:
            raise InputError(f"{path}: line {lineno} is not '<sha256>  <file name>'; "
                             f"found {line!r}; regenerate it with sha256sum")
        sums[name] = digest.lower()
    return sums


def verify_sha256(path: str | os.PathLike[str]) -> bool:
    """Returns True if ``path`` is listed in a SHA256SUMS beside it and matches, False if unlisted.

    A listed file whose digest differs raises `InputError`.
    """
    path = Path(path)
    sums_file = path.parent / "SHA256SUMS"
    if not sums_file.is_file():
        return False
    expected = read_sha256sums(sums_file).get(path.name)
    if expected is None:
        return False
    found = sha256_file(path)
    if found != expected:
        raise InputError(f"{path}: SHA-256 {found} does not match {expected} in {sums_file}; "
                         f"the file is corrupt or was replaced: copy it again")
    return True


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Returns the uint8 array stored in an IDX file (gzip-compressed or not)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: cannot decompress ({exc}); expected a gzip-compressed IDX "
                             f"file: copy it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise InputError(f"{path}: not an IDX file (expected the header to start with two zero bytes, "
                         f"found {raw[:4].hex() or 'nothing'}); pass an MNIST IDX file, gz or not")
    if raw[2] != _UBYTE:
        raise InputError(f"{path}: IDX type code 0x{raw[2]:02x}; fidkit reads only unsigned-byte "
                         f"(0x08) data as MNIST has")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise InputError(f"{path}: IDX header declares {ndim} dimensions but the file has "
                         f"{len(raw)} bytes; the file is truncated: copy it again")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise InputError(f"{path}: IDX header declares shape {shape} ({size} bytes of data) but the "
                         f"file holds {len(raw) - header}; the file is truncated or corrupt: copy it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise InputError(f"{root}: neither {stem}.gz nor {stem} found; expected a folder with the "
                     f"standard MNIST IDX files (train-images-idx3-ubyte, ..., t10k-labels-idx1-ubyte)")


def load_mnist(split: Literal["train", "test"] = "test", root: str | os.PathLike[str] | None = None,
               *, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 (N, 28, 28), labels uint8 (N,)) of one MNIST split.

    ``root`` is a folder with the standard IDX files, gz or not; None is the test split shipped in the
    package. With ``verify``, each file listed in a ``SHA256SUMS`` beside it must match its digest.
    """
    if split not in _PREFIX:
        raise InputError(f"MNIST split {split!r}; expected 'train' or 'test'")
    folder = SHIPPED_DIR if root is None else Path(root)
    if root is None and split == "train":
        raise InputError("the MNIST training split is not shipped in the package; pass root= a folder "
                         "with train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz)")
    img_path = _find(folder, f"{_PREFIX[split]}-images-idx3-ubyte")
    lab_path = _find(folder, f"{_PREFIX[split]}-labels-idx1-ubyte")
    if verify:
        verify_sha256(img_path)
        verify_sha256(lab_path)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise InputError(f"{img_path}: images of shape {images.shape}; expected (N, 28, 28)")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise InputError(f"{lab_path}: labels of shape {labels.shape}; expected ({images.shape[0]},) "
                         f"to match {img_path.name}")
    if labels.size and labels.max() > 9:
        raise InputError(f"{lab_path}: label {int(labels.max())} found; expected digits 0..9")
    return images, labels


def to_rgb(images: np.ndarray) -> np.ndarray:
    """Returns grayscale (N, H, W) images as float32 NHWC RGB on the 0..255 scale (the extractor input)."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise InputError(f"images of shape {images.shape}; expected grayscale (N, H, W)")
    return np.repeat(images.astype(np.float32)[..., None], 3, axis=-1)
