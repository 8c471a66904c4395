"""The weights manager: finds, downloads, verifies and converts network weights to fidkit's canonical form.

A canonical weights file is an ``.npz`` of named float32 arrays (``f"{node}.{param}"``, PyTorch layouts),
with no framework in it. Its digest is the SHA-256 of its *content* (sorted names, dtypes, shapes and
bytes), not of the zip, so the same network converted from pytorch-fid's ``.pth`` and from TensorFlow's
``.tgz`` has one digest when the conversion is exact.

Lookup order for a registered file name: an explicit path (``weights=`` / ``--weights``), the folders in
``$FIDKIT_WEIGHTS_DIR`` (``os.pathsep``-separated), files bundled in the package, fidkit's cache
(``$FIDKIT_HOME/weights``, default the platform user cache dir), the torch hub checkpoint folder
(``$TORCH_HOME/hub/checkpoints``, where pytorch-fid and torch-fidelity users already have the file), then a
download into fidkit's cache (skipped when ``$FIDKIT_OFFLINE`` is set; a broken transfer is resumed with an
HTTP Range request). Among an extractor's files, those whose converter can run in this install are tried
first. Converted files are cached under ``$FIDKIT_HOME/weights/canonical/<source sha256>.npz``.

Downloads are hand-written on urllib rather than pooch: pooch is not a core dependency (tqdm, filelock and
platformdirs are), it cannot check a bare 8-hex torch-hub prefix or a byte size (all that is published for
some files), and it takes no inter-process lock, which a shared cache needs.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import sys
import tarfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from ._atomic import atomic_path
from .errors import BackendUnavailableError, FidkitWarning, InputError, WeightsError

if TYPE_CHECKING:
    import filelock

#: Version tag mixed into every canonical digest, so a change of the digest recipe changes every digest.
_DIGEST_TAG = b"fidkit-canonical-weights-v1\n"
_CHUNK = 1 << 20


class _DigestMismatch(WeightsError):
    """A file fails its published digest: never retried from another source, always reported."""


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file: where it comes from, how to check it and how to convert it.

    ``sha256`` is the full digest where a source publishes one; ``sha256_prefix`` the torch hub prefix in
    the file name (checked only when no full digest is known); ``converter`` is ``"module:function"``
    (path -> canonical arrays) and ``runtime`` the fidkit runtime whose framework it imports.
    """

    name: str
    url: str | None
    sha256: str | None
    sha256_prefix: str | None
    format: str
    converter: str | None
    runtime: str | None
    bundled: bool = False
    note: str = ""
    #: Digest of the canonical content once converted, where known: lets an already converted ``.npz``
    #: passed explicitly count as official, and checks the converter on the real file.
    canonical_digest: str | None = None
    #: Published size in bytes, checked before the digest: a truncated or different file fails at once with
    #: a clear message, and a file with no published digest (TensorFlow's ``.tgz``) is still checked.
    size: int | None = None


@dataclass(frozen=True)
class CanonicalWeights:
    """A canonical ``.npz`` ready for any runtime, with the digest of its content and where it came from."""

    path: str
    digest: str
    source: str
    official: bool
    source_sha256: str = ""

    def load(self) -> dict[str, np.ndarray]:
        """Returns the arrays of the canonical file, by name."""
        return load_canonical(self.path)


#: How each file format is converted, and the runtime its converter imports.
FORMATS: Mapping[str, tuple[str | None, str | None]] = MappingProxyType({
    "canonical-npz": (None, None),
    "torch-state-dict": ("fidkit.backends.torch.convert:from_state_dict", "torch"),
    "torchscript": ("fidkit.backends.torch.convert:from_torchscript", "torch"),
    "tf-graphdef": ("fidkit.backends.tf.convert:from_graphdef", "tf"),
    "tf-graphdef-tgz": ("fidkit.backends.tf.convert:from_graphdef", "tf"),
})


def _entry(name: str, url: str | None, fmt: str, *, sha256: str | None = None,
           sha256_prefix: str | None = None, size: int | None = None, bundled: bool = False,
           note: str = "") -> WeightsFile:
    converter, runtime = FORMATS[fmt]
    return WeightsFile(name, url, sha256, sha256_prefix, fmt, converter, runtime, bundled, note, size=size)


#: The registered weights files, by file name. No upstream project publishes a digest of its Inception file
#: beside the download; the full SHA-256s and sizes below are the values that other public projects pin or
#: record for these exact URLs. Every digest was found in more than one independent place and agrees with
#: the torch hub prefix in the file name (``load_state_dict_from_url`` does not check that prefix by default,
#: so nothing upstream does). ``note`` says where each value comes from and when a size has one source only;
#: tests/weights_keys/README.md lists the sources. The ``.tgz`` has a published size but no published digest.
WEIGHTS_FILES: Mapping[str, WeightsFile] = MappingProxyType({f.name: f for f in (
    _entry("pt_inception-2015-12-05-6726825d.pth",
           "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
           "pt_inception-2015-12-05-6726825d.pth",
           "torch-state-dict", sha256_prefix="6726825d",
           sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95_628_359,
           note="pytorch-fid FID_WEIGHTS_URL (src/pytorch_fid/inception.py). SHA-256 pinned as the download "
                "check in snap-research/discoscene models/inception_model.py (genforce code) and recorded, "
                "with the size, by several unrelated projects; SHA-1 bd836944fd6db519dfd8d924aa457f5b3c8357ff "
                "in mlcommons/training stable_diffusion/scripts/checkpoints/download_inception.sh"),
    _entry("weights-inception-2015-12-05-6726825d.pth",
           "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
           "weights-inception-2015-12-05-6726825d.pth",
           "torch-state-dict", sha256_prefix="6726825d",
           sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95_628_359,
           note="torch-fidelity URL_INCEPTION_V3 (torch_fidelity/feature_extractor_inceptionv3.py). The same "
                "bytes as pytorch-fid's file: projects that pin torch-fidelity's v0.2.0 asset record the same "
                "SHA-256 (no repository of torch-fidelity's own publishes it)"),
    _entry("inception-2015-12-05.pt",
           "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
           "inception-2015-12-05.pt",
           "torchscript",
           sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
           note="NVIDIA's TorchScript (stylegan2-ada-pytorch metrics, clean-fid downloads_helper.py). SHA-256 "
                "pinned as the download check in crowsonkb/k-diffusion k_diffusion/evaluation.py and recorded "
                "by several other projects. Its exact size (95,607,719 bytes) has one source only, so it is "
                "not checked: a wrong size would refuse the real file, and the digest decides anyway"),
    _entry("inception-2015-12-05.tgz",
           "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz",
           "tf-graphdef-tgz", size=88_931_400,
           note="TensorFlow's classify_image_graph_def.pb archive (bioinf-jku/TTUR fid.py). No digest is "
                "published; the size is the server's Content-Length, quoted in "
                "https://github.com/BartyzalRadek/Multi-label-Inception-net/issues/13, and what "
                "TensorFlow's classify_image.py prints after downloading it"),
    _entry("inception_v3_google-0cc3c7bd.pth",
           "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
           "torch-state-dict", sha256_prefix="0cc3c7bd",
           sha256="0cc3c7bd75056d25e46cba549dc184522069b81e9787eff6df84f397bd52a5ef", size=108_949_747,
           note="torchvision Inception_V3_Weights.IMAGENET1K_V1 (torchvision/models/inception.py; its meta "
                "_file_size 103.903 MiB agrees with the size). SHA-256 recorded by several unrelated projects; "
                "size also the Content-Length shown in pytorch-ignite/pytorch-ignite.ai "
                "src/blog/2021-08-11-GAN-evaluation-using-FID-and-IS.md"),
    _entry("fidkit-mnist-v1.npz", None, "canonical-npz", bundled=True,
           note="shipped in fidkit/data; its SHA-256 is read from the fidkit-mnist-v1.json sidecar that "
                "scripts/train_mnist.py writes beside it"),
)})


def _tf2015_scopes() -> dict[str, str]:
    conv = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
    block_a = {"conv": "branch1x1", "tower/conv": "branch5x5_1", "tower/conv_1": "branch5x5_2",
               "tower_1/conv": "branch3x3dbl_1", "tower_1/conv_1": "branch3x3dbl_2",
               "tower_1/conv_2": "branch3x3dbl_3", "tower_2/conv": "branch_pool"}
    block_b = {"conv": "branch3x3", "tower/conv": "branch3x3dbl_1", "tower/conv_1": "branch3x3dbl_2",
               "tower/conv_2": "branch3x3dbl_3"}
    block_c = {"conv": "branch1x1", "tower/conv": "branch7x7_1", "tower/conv_1": "branch7x7_2",
               "tower/conv_2": "branch7x7_3", **{f"tower_1/{c}": f"branch7x7dbl_{i + 1}" for i, c in
                                                 enumerate(("conv", "conv_1", "conv_2", "conv_3", "conv_4"))},
               "tower_2/conv": "branch_pool"}
    block_d = {"tower/conv": "branch3x3_1", "tower/conv_1": "branch3x3_2",
               **{f"tower_1/{c}": f"branch7x7x3_{i + 1}" for i, c in
                  enumerate(("conv", "conv_1", "conv_2", "conv_3"))}}
    block_e = {"conv": "branch1x1", "tower/conv": "branch3x3_1", "tower/mixed/conv": "branch3x3_2a",
               "tower/mixed/conv_1": "branch3x3_2b", "tower_1/conv": "branch3x3dbl_1",
               "tower_1/conv_1": "branch3x3dbl_2", "tower_1/mixed/conv": "branch3x3dbl_3a",
               "tower_1/mixed/conv_1": "branch3x3dbl_3b", "tower_2/conv": "branch_pool"}
    blocks = [("mixed", "Mixed_5b", block_a), ("mixed_1", "Mixed_5c", block_a), ("mixed_2", "Mixed_5d", block_a),
              ("mixed_3", "Mixed_6a", block_b), ("mixed_4", "Mixed_6b", block_c),
              ("mixed_5", "Mixed_6c", block_c), ("mixed_6", "Mixed_6d", block_c),
              ("mixed_7", "Mixed_6e", block_c), ("mixed_8", "Mixed_7a", block_d),
              ("mixed_9", "Mixed_7b", block_e), ("mixed_10", "Mixed_7c", block_e)]
    out = dict(conv)
    for tf_block, pt_block, table in blocks:
        out.update({f"{tf_block}/{k}": f"{pt_block}.{v}" for k, v in table.items()})
    return out


#: The 2015 TensorFlow graph's conv scopes (``<scope>/conv2d_params``, ``<scope>/batchnorm/beta`` ...) and
#: the canonical (pytorch-fid) conv-block name each maps to, e.g. ``mixed_9/tower/mixed/conv`` ->
#: ``Mixed_7b.branch3x3_2a``. The pairs are those of torch-fidelity's and pytorch-fid's TF converters;
#: the classifier is ``softmax/weights`` (in, out) and ``softmax/biases`` -> ``fc.weight`` / ``fc.bias``.
TF2015_SCOPES: Mapping[str, str] = MappingProxyType(_tf2015_scopes())


# ----------------------------------------------------------------------------------------- digests


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Returns the hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


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
    """Returns the float32 arrays of a canonical ``.npz``, checked to be float32 and finite."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a readable canonical weights .npz ({exc}); expected an .npz of "
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


def _full_pin(entry: WeightsFile) -> str | None:
    """Returns the full SHA-256 of ``entry``: registered, or for a bundled file its sidecar's ``sha256``."""
    if entry.sha256 or not entry.bundled:
        return entry.sha256
    meta = _read_sidecar(_bundled_dir() / f"{Path(entry.name).stem}.json")
    sha = meta.get("sha256")
    return sha if isinstance(sha, str) and len(sha) == 64 else None


def _matches_pin(entry: WeightsFile, sha: str) -> bool | None:
    """Returns True/False when ``entry`` is pinned and ``sha`` does/doesn't match; None when unpinned."""
    full = _full_pin(entry)
    if full:
        return sha == full
    if entry.sha256_prefix:
        return sha.startswith(entry.sha256_prefix)
    return None


def _expected(entry: WeightsFile) -> str:
    return _full_pin(entry) or f"{entry.sha256_prefix}… (torch hub prefix)"


def _size_mismatch(entry: WeightsFile | None, path: Path) -> str | None:
    """Returns why ``path`` is not ``entry``'s published size, or None when it is or none is published."""
    if entry is None or entry.size is None:
        return None
    have = path.stat().st_size
    if have == entry.size:
        return None
    how = "truncated" if have < entry.size else "longer than published"
    return f"is {have} bytes, expected {entry.size} for {entry.name} ({how}: a broken download or another file)"


# ----------------------------------------------------------------------------------------- locations


def fidkit_home() -> Path:
    """Returns fidkit's cache root: ``$FIDKIT_HOME``, else the platform user cache dir."""
    env = os.environ.get("FIDKIT_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("fidkit"))


def cache_dir() -> Path:
    """Returns the folder where fidkit keeps downloaded weights files."""
    return fidkit_home() / "weights"


def canonical_dir() -> Path:
    """Returns the folder where converted canonical files are cached by source digest."""
    return cache_dir() / "canonical"


def torch_hub_checkpoints() -> Path:
    """Returns torch hub's checkpoint folder, computed as torch.hub.get_dir() does, without importing torch."""
    env = os.environ.get("TORCH_HOME")
    if env:
        root = Path(env).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "torch"
    return root / "hub" / "checkpoints"


def _bundled_dir() -> Path:
    return Path(__file__).resolve().parent / "data"


def search_dirs(entry: WeightsFile) -> list[tuple[str, Path]]:
    """Returns the (label, folder) pairs searched for ``entry``, in order."""
    dirs: list[tuple[str, Path]] = []
    for d in os.environ.get("FIDKIT_WEIGHTS_DIR", "").split(os.pathsep):
        if d:
            dirs.append(("FIDKIT_WEIGHTS_DIR", Path(d).expanduser()))
    if entry.bundled:
        dirs.append(("bundled", _bundled_dir()))
    dirs.append(("cache", cache_dir()))
    if entry.format in ("torch-state-dict", "torchscript"):
        dirs.append(("torch hub", torch_hub_checkpoints()))
    return dirs


def find_local(entry: WeightsFile) -> tuple[str, Path] | None:
    """Returns (label, path) of the first existing copy of ``entry`` in the search folders, or None."""
    for label, d in search_dirs(entry):
        p = d / entry.name
        if p.is_file():
            return label, p
    return None


# ----------------------------------------------------------------------------------------- atomic writes



def _lock(path: Path, timeout: float = 3600.0) -> filelock.FileLock:
    import filelock

    path.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(path) + ".lock", timeout=timeout)


# ----------------------------------------------------------------------------------------- download


def download(entry: WeightsFile, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Returns the path of ``entry`` in fidkit's cache, downloading and verifying it first if it is absent.

    The body streams into a temp file in the cache folder (a broken transfer is resumed with HTTP Range), is
    checked against the published digest and only then renamed into place; a transfer that cannot be
    completed, or a corrupt one, leaves no file behind. A file lock makes two
    processes filling the cache at once download it once.
    """
    if entry.url is None:
        raise WeightsError(f"{entry.name}: has no download URL; it is expected in {_bundled_dir()}")
    final = cache_dir() / entry.name
    with _lock(final):
        if final.is_file():
            _verify_or_raise(entry, final)
            return final
        with atomic_path(final) as tmp:
            _fetch(entry.url, tmp, entry.name, progress=progress, timeout=timeout)
            problem, _sha = _check(entry, tmp)
            if problem:
                raise _DigestMismatch(f"{entry.name}: downloaded from {entry.url}, {problem}; nothing was kept "
                                      f"— retry, or report a changed file")
    return final


def _fetch(url: str, dest: Path, name: str, *, progress: bool, timeout: float, attempts: int = 3) -> None:
    """Streams ``url`` into ``dest``; a transfer that breaks mid-body is resumed with an HTTP Range request
    (or restarted where the server ignores Range), at most ``attempts`` times in all."""
    from tqdm.auto import tqdm

    have, total = 0, None
    with tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr,
              disable=not progress, leave=False) as bar:
        for _ in range(attempts):
            headers = {"User-Agent": "fidkit"}
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
                raise WeightsError(f"{name}: cannot download {url} ({_reason(exc)})") from None
            with resp:
                resumed = have > 0 and resp.status == 206 and \
                    resp.headers.get("Content-Range", "").startswith(f"bytes {have}-")
                if not resumed:
                    have = 0
                    bar.reset()
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                bar.total = total
                bar.refresh()
                broken = False
                with open(dest, "ab" if resumed else "wb") as out:
                    while True:
                        try:
                            chunk = resp.read(_CHUNK)
                        except (OSError, http.client.HTTPException):  # the body broke off: resume it
                            broken = True
                            break
                        if not chunk:
                            break
                        out.write(chunk)
                        have += len(chunk)
                        bar.update(len(chunk))
            if not broken and (total is None or have == total):
                return
    raise WeightsError(f"{name}: download from {url} was interrupted {attempts} times (last after {have} of "
                       f"{total if total is not None else '?'} bytes); nothing was kept — retry later")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"


def _verify_or_raise(entry: WeightsFile, path: Path) -> str:
    """Returns the file's SHA-256 after checking it against ``entry``'s size and pin; deletes nothing."""
    problem, sha = _check(entry, path)
    if problem or sha is None:
        raise _DigestMismatch(f"{path}: {problem}; fidkit did not touch it — delete it to download a fresh "
                              f"copy, or pass it explicitly (weights=/--weights) to use it as unofficial weights")
    return sha


def _check(entry: WeightsFile, path: Path) -> tuple[str | None, str | None]:
    """Returns (what is wrong with ``path`` as ``entry``: its size, else its SHA-256; None if nothing,
    the SHA-256 if it was computed): the size first, which needs no read of the file."""
    bad_size = _size_mismatch(entry, path)
    if bad_size:
        return bad_size, None
    sha = sha256_file(path)
    if _matches_pin(entry, sha) is False:
        return f"has SHA-256 {sha}, expected {_expected(entry)} for {entry.name}", sha
    return None, sha


# ----------------------------------------------------------------------------------------- formats


def detect_format(path: str | os.PathLike[str]) -> str:
    """Returns the format name of a weights file (a key of `FORMATS`), read from its content."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b" or (p.suffix in (".tar", ".tgz") and tarfile.is_tarfile(p)):
        return "tf-graphdef-tgz"
    if head == b"PK\x03\x04":
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
        if names and all(n.endswith(".npy") for n in names):
            return "canonical-npz"
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-state-dict"
    elif head[:1] == b"\x80":  # a legacy (pre-zip) torch.save pickle
        return "torch-state-dict"
    if p.suffix == ".pb":
        return "tf-graphdef"
    raise WeightsError(f"{p}: unknown weights format; expected a canonical .npz, a torch state dict (.pth), "
                       f"a TorchScript module (.pt), a TF GraphDef (.pb) or its .tgz")


def convert(source: str | os.PathLike[str], fmt: str | None = None) -> dict[str, np.ndarray]:
    """Returns the canonical float32 arrays of a weights file in any supported format."""
    from .registry import RUNTIME_MODULES, load_object, runtime_installed

    fmt = fmt or detect_format(source)
    if fmt == "canonical-npz":
        return load_canonical(source)
    converter, runtime = FORMATS[fmt]
    if converter is None or runtime is None:
        raise WeightsError(f"{source}: no converter is registered for format {fmt!r}")
    if not runtime_installed(runtime):
        raise BackendUnavailableError(f"{source}: converting a {fmt} file needs {RUNTIME_MODULES[runtime]!r}: "
                                      f"pip install 'fidkit[{runtime}]', or convert it once elsewhere with "
                                      f"`fidkit weights convert` and pass the .npz")
    arrays = load_object(converter)(str(source))
    _check_canonical(arrays, f"{source} (converted)")
    return arrays


def save_canonical(arrays: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> str:
    """Returns the canonical digest after writing ``arrays`` atomically to an ``.npz`` at ``path``."""
    _check_canonical(arrays, str(path))
    final = Path(path)
    with atomic_path(final) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return canonical_digest(arrays)


def to_canonical(source: str | os.PathLike[str], source_sha256: str | None = None) -> tuple[Path, str]:
    """Returns (canonical path, digest) for a weights file, converting it once and caching it by its SHA-256.

    A canonical ``.npz`` is used where it lies; other formats are converted into
    ``canonical_dir()/<source sha256>.npz`` with a ``.json`` sidecar recording the digest.
    """
    src = Path(source)
    fmt = detect_format(src)
    if fmt == "canonical-npz":
        return src, canonical_digest(load_canonical(src))
    sha = source_sha256 or sha256_file(src)
    out = canonical_dir() / f"{sha}.npz"
    sidecar = out.with_suffix(".json")
    with _lock(out):
        meta = _read_sidecar(sidecar)
        if (out.is_file() and meta.get("source_sha256") == sha and isinstance(meta.get("digest"), str)
                and meta.get("size") == out.stat().st_size):
            return out, meta["digest"]
        digest = save_canonical(convert(src, fmt), out)
        with atomic_path(sidecar) as tmp:
            tmp.write_text(json.dumps({"source": src.name, "source_sha256": sha, "format": fmt,
                                       "digest": digest, "size": out.stat().st_size}, indent=1))
    return out, digest


def _read_sidecar(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


# ----------------------------------------------------------------------------------------- resolve


def _entries(names: tuple[str, ...]) -> list[WeightsFile]:
    unknown = [n for n in names if n not in WEIGHTS_FILES]
    if unknown:
        raise InputError(f"unknown weights file(s) {unknown}; registered: {', '.join(WEIGHTS_FILES)}")
    return [WEIGHTS_FILES[n] for n in names]


def _offline() -> bool:
    return os.environ.get("FIDKIT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def locate(names: tuple[str, ...], *, download_missing: bool = True,
           progress: bool = True) -> tuple[WeightsFile, Path]:
    """Returns the first registered file of ``names`` found locally, else the first one downloaded.

    Files whose converter can run here (its framework is installed) come first, so a TensorFlow-only
    install uses or fetches the ``.tgz`` rather than a ``.pth`` it could not convert.
    """
    entries = _entries(names)
    from .registry import runtime_installed

    usable = [e for e in entries if e.runtime is None or runtime_installed(e.runtime)]
    ordered = usable + [e for e in entries if e not in usable]
    for entry in ordered:
        found = find_local(entry)
        if found is not None:
            return entry, found[1]
    errors = []
    if download_missing and not _offline():
        for entry in ordered:
            if entry.url is None:
                continue
            try:
                return entry, download(entry, progress=progress)
            except _DigestMismatch:
                raise
            except WeightsError as exc:
                errors.append(str(exc))
    first = next((e for e in entries if e.url is not None), entries[0])
    why = f" ({errors[0]})" if errors else " (FIDKIT_OFFLINE is set)" if _offline() else ""
    others = [e.name for e in entries if e is not first]
    alt = f"; any of {', '.join(others)} in the same place also works" if others else ""
    raise WeightsError(f"weights file {first.name} not found and not downloadable{why}; download "
                       f"{first.url} and put it at {cache_dir() / first.name} (or in $FIDKIT_WEIGHTS_DIR, "
                       f"or pass weights=/--weights PATH){alt}")


def resolve_weights(names: tuple[str, ...], explicit: str | None) -> CanonicalWeights:
    """Returns the canonical weights for an extractor: ``explicit`` if given, else the first registered file found.

    ``names`` are the registered file names in preference order. An explicit file whose SHA-256 matches none
    of them is used with a `FidkitWarning` and ``official=False``; a found or downloaded file that fails its
    check raises `WeightsError`. A registered file with no published digest is used with a warning.
    """
    entries = _entries(tuple(names))
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {explicit} does not exist; expected one of "
                               f"{', '.join(names) or 'a canonical .npz'} (see `fidkit weights where`)")
        sha = sha256_file(path)
        canon, digest = to_canonical(path, sha)
        official = _official(entries, path, sha, digest)
        named = WEIGHTS_FILES.get(path.name)
        if not official and named is not None and _matches_pin(named, sha) is None:
            warnings.warn(f"{path}: {named.name} has no published SHA-256 to check against; using it as "
                          f"given (SHA-256 {sha[:12]}…, canonical digest {digest[:12]}…)", FidkitWarning,
                          stacklevel=2)
        elif not official:
            warnings.warn(f"weights {path} (SHA-256 {sha[:12]}…) match no official file of "
                          f"{', '.join(names) or 'this extractor'}; using them as unofficial weights, "
                          f"recorded as digest {digest[:12]}…", FidkitWarning, stacklevel=2)
        return CanonicalWeights(str(canon), digest, path.name, official, sha)
    entry, path = locate(tuple(names))
    sha = _verify_or_raise(entry, path)
    canon, digest = to_canonical(path, sha)
    if entry.canonical_digest and digest != entry.canonical_digest:
        raise WeightsError(f"{path}: converts to canonical digest {digest}, expected {entry.canonical_digest} "
                           f"for {entry.name}; the converter or the file changed — report it to fidkit")
    pin = _matches_pin(entry, sha)
    if pin is None and not entry.bundled:
        sized = ", its size is the published one" if entry.size is not None else ""
        warnings.warn(f"{path}: {entry.name} has no published SHA-256 to check against; using it as found "
                      f"(SHA-256 {sha[:12]}…, canonical digest {digest[:12]}…{sized})", FidkitWarning,
                      stacklevel=2)
    return CanonicalWeights(str(canon), digest, entry.name, bool(pin) or entry.bundled, sha)


def _official(entries: list[WeightsFile], path: Path, sha: str, digest: str) -> bool:
    """Returns whether an explicit file is one of the registered files, by file or canonical digest."""
    for entry in entries:
        if _matches_pin(entry, sha) or (entry.canonical_digest and entry.canonical_digest == digest):
            return True
        if entry.bundled:
            bundled = _bundled_dir() / entry.name
            if bundled.is_file() and sha256_file(bundled) == sha:
                return True
    return False


# ----------------------------------------------------------------------------------------- CLI


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Returns the ``weights`` parser after adding it, with ``where``, ``verify`` and ``convert``, to ``subparsers``.

    Each leaf sets ``func``: call ``args.func(args)``, which returns the process exit code.
    """
    p = subparsers.add_parser("weights", help="find, verify and convert network weights files")
    sub = p.add_subparsers(dest="weights_command", required=True)

    w = sub.add_parser("where", help="where each weights file is looked for, found, or would be downloaded to")
    w.add_argument("names", nargs="*", help="registered file names or extractor names (default: all)")
    w.add_argument("--json", action="store_true", help="print JSON")
    w.set_defaults(func=_cli_where)

    v = sub.add_parser("verify", help="check weights files against their published SHA-256")
    v.add_argument("paths", nargs="*", help="files to check (default: every registered file found locally)")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(func=_cli_verify)

    c = sub.add_parser("convert", help="convert a weights file to a canonical .npz and print its digest")
    c.add_argument("source", help="a .pth, TorchScript .pt, .pb, .tgz or .npz file")
    c.add_argument("-o", "--output", help="where to write the .npz (default: fidkit's canonical cache)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=_cli_convert)
    return p


def _names_for(args_names: list[str]) -> list[str]:
    if not args_names:
        return list(WEIGHTS_FILES)
    out: list[str] = []
    for n in args_names:
        if n in WEIGHTS_FILES:
            out.append(n)
            continue
        from .registry import get_spec

        out.extend(get_spec(n).weights)
    return out


def _emit(args: argparse.Namespace, payload: object, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(payload, indent=1))
    else:
        print("\n".join(lines))


def _cli_where(args: argparse.Namespace) -> int:
    rows, lines = [], []
    for name in _names_for(args.names):
        entry = WEIGHTS_FILES[name]
        found = find_local(entry)
        row = {**asdict(entry), "searched": [str(d / name) for _, d in search_dirs(entry)],
               "found": str(found[1]) if found else None, "download_to": str(cache_dir() / name)}
        rows.append(row)
        lines.append(f"{name}: {'found at ' + str(found[1]) if found else 'missing'}")
        lines.extend(f"  searched {s}" for s in row["searched"])
        if not found and entry.url:
            lines.append(f"  download {entry.url} -> {row['download_to']}")
    _emit(args, rows, lines)
    return 0


def _cli_verify(args: argparse.Namespace) -> int:
    targets: list[tuple[WeightsFile | None, Path]] = []
    if args.paths:
        for p in args.paths:
            targets.append((WEIGHTS_FILES.get(Path(p).name), Path(p)))
    else:
        for entry in WEIGHTS_FILES.values():
            found = find_local(entry)
            if found:
                targets.append((entry, found[1]))
    rows, lines, bad = [], [], 0
    for entry, path in targets:
        if not path.is_file():
            row = {"path": str(path), "status": "missing"}
        else:
            sha = sha256_file(path)
            matches = [e.name for e in WEIGHTS_FILES.values() if _matches_pin(e, sha)]
            pin = _matches_pin(entry, sha) if entry else None
            if _size_mismatch(entry, path):
                pin = False
            status = ("ok" if pin else "mismatch" if pin is False else
                      "unpinned" if entry else "ok" if matches else "unknown")
            pinned = entry is not None and (entry.sha256 or entry.sha256_prefix)
            row = {"path": str(path), "sha256": sha, "status": status,
                   "expected": _expected(entry) if pinned and entry else None, "matches": matches}
        bad += row["status"] in ("mismatch", "missing")
        rows.append(row)
        lines.append(f"{row['status']:9s} {row['path']}" + (f"  sha256 {row['sha256']}" if "sha256" in row
                                                              else ""))
    _emit(args, rows, lines or ["no registered weights file found locally"])
    return 1 if bad else 0


def _cli_convert(args: argparse.Namespace) -> int:
    src = Path(args.source)
    if not src.is_file():
        raise WeightsError(f"{src}: no such file; expected a weights file to convert")
    sha = sha256_file(src)
    if args.output:
        digest = save_canonical(convert(src), args.output)
        out = Path(args.output)
    else:
        canon, digest = to_canonical(src, sha)
        out = canon
    matches = [e.name for e in WEIGHTS_FILES.values() if _matches_pin(e, sha)]
    _emit(args, {"source": str(src), "source_sha256": sha, "format": detect_format(src), "output": str(out),
                 "digest": digest, "official": bool(matches)},
          [f"{src} -> {out}", f"digest {digest}"])
    return 0

